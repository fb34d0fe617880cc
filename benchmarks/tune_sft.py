"""Instruction tuning of the packaged SmolLM2-135M-Instruct on the SMS spam/ham task, measured:
zero-shot and 2-shot accuracy on the held-out set (label likelihood and exact greedy reply), LoRA SFT
with TRL's SFTTrainer (time, CPU time, memory, trainable parameters), accuracy after, the rank of
every learned update ΔW = BA, merged-vs-adapter logits, and the step time of full fine-tuning.

    python benchmarks/tune_sft.py --preset cpu --threads 1
    python benchmarks/tune_sft.py --preset cpu --threads 1 --full-ft-steps 32   # full FT evaluated too
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from collections import Counter


class Clock:
    def __init__(self):
        self.t, self.c = time.perf_counter(), time.process_time()

    def lap(self, what: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        print(f"[{what}: {t - self.t:.1f} s wall, {c - self.c:.1f} s CPU, load average "
              f"{os.getloadavg()[0]:.1f}, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB]",
              flush=True)
        self.t, self.c = t, c


def evaluate(name, model, tok, examples, labels):
    from lmbook.tune.evaluate import label_accuracy, reply_accuracy

    la = label_accuracy(model, tok, examples, labels, progress=False)
    ra, replies = reply_accuracy(model, tok, examples, progress=False)
    print(f"{name}: label-likelihood accuracy {la:.3f}, exact-reply accuracy {ra:.3f} on {len(examples)} held-out")
    print("   most common replies:", Counter(replies).most_common(5), flush=True)
    return la, ra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="SFT steps (default: the preset's)")
    p.add_argument("--full-ft-steps", type=int, default=3, help="full fine-tuning steps (0: skip)")
    p.add_argument("--few-shot", action="store_true", help="also measure 2-shot prompting")
    p.add_argument("--out", default="runs/tune_sft")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from lmbook.tune.lora import count_parameters, lora_config, lora_updates, merge
    from lmbook.tune.model import load_chat_model
    from lmbook.tune.presets import get_tune_preset
    from lmbook.tune.sft import train_sft
    from lmbook.tune.tasks import few_shot, spam_task

    pre = get_tune_preset(args.preset)
    steps = args.steps or pre.sft_steps
    print(f"preset {pre.name}: {pre.to_dict()}", flush=True)
    clock = Clock()
    tok, model = load_chat_model(pre.source)
    clock.lap("load model")
    task = spam_task(pre.n_train, pre.n_eval, tokenizer=tok, max_message_tokens=pre.max_message_tokens, seed=pre.seed)
    print(task)
    evaluate("zero-shot", model, tok, task.eval, task.labels)
    clock.lap("zero-shot evaluation")
    if args.few_shot:
        evaluate("2-shot", model, tok, few_shot(task, 2), task.labels)
        clock.lap("2-shot evaluation")

    lora = lora_config(pre.lora_r, pre.lora_alpha, pre.lora_targets, pre.lora_dropout)
    res = train_sft(model, tok, task.train, steps=steps, batch_size=pre.sft_batch_size, lr=pre.sft_lr, lora=lora,
                    output_dir=f"{args.out}/lora", seed=pre.seed, progress=False)
    clock.lap("LoRA SFT")
    print(f"LoRA: {res.trainable:,} trainable of {res.total:,} ({100 * res.trainable / res.total:.2f}%), "
          f"{res.seconds / steps:.2f} s/step wall, {res.cpu_seconds / steps:.2f} s/step CPU; losses {res.losses}")
    tuned = res.trainer.model
    evaluate("after LoRA SFT", tuned, tok, task.eval, task.labels)
    clock.lap("evaluation after LoRA")

    ups = lora_updates(tuned)
    print(f"LoRA updates: {len(ups)} matrices, ranks {sorted(Counter(u.rank for u in ups).items())}, "
          f"shapes {sorted(Counter(u.shape for u in ups).items())}")
    for u in ups[:2]:
        print(f"   {u.name}: W {u.shape} = {u.full_params:,} numbers, A and B {u.lora_params:,}, rank {u.rank}, "
              f"|ΔW|/|W| {u.rel_norm:.4f}")
    from lmbook.llm_eval import prompt_ids
    from lmbook.tune.evaluate import _pad

    ids, att = _pad([prompt_ids(tok, e.prompt) for e in task.eval[:8]], tok.pad_token_id)
    with torch.no_grad():
        before = tuned(input_ids=ids, attention_mask=att).logits
        merged = merge(tuned)
        after = merged(input_ids=ids, attention_mask=att).logits
    m = att.bool()
    print(f"merged vs adapter logits: max |diff| {(before - after)[m].abs().max().item():.2e} "
          f"(logits up to {before[m].abs().max().item():.1f}); merged model {type(merged).__name__}, "
          f"{count_parameters(merged)[1]:,} parameters")
    clock.lap("rank and merge")

    if args.full_ft_steps:
        del tuned, merged, res
        tok, model = load_chat_model(pre.source, verbose=False)
        full = train_sft(model, tok, task.train, steps=args.full_ft_steps, batch_size=pre.sft_batch_size,
                         lr=pre.full_ft_lr, lora=None, output_dir=f"{args.out}/full", seed=pre.seed,
                         save=False, progress=False)
        clock.lap("full fine-tuning")
        print(f"full FT: {full.trainable:,} trainable, {full.seconds / full.steps:.2f} s/step wall, "
              f"{full.cpu_seconds / full.steps:.2f} s/step CPU; losses {full.losses}")
        if args.full_ft_steps >= 16:
            evaluate("after full FT", full.trainer.model, tok, task.eval, task.labels)
            clock.lap("evaluation after full FT")


if __name__ == "__main__":
    main()
