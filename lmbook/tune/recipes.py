"""The end-to-end runs behind ``python -m lmbook tune sft|dpo`` and the chapters' cells: load the
model, build the data, measure before, train, measure after. Each returns a dict of figures.

    run_sft(preset)   LoRA (or full, ``lora=False``) SFT on spam_task; accuracy before/after
    run_dpo(preset)   DPO with LoRA on secret_pairs; leak rate, preference accuracy, KL, drift

Under ``torchrun`` / ``accelerate launch`` the Trainer trains on every process (DDP; gloo on CPU)
and only the main process measures and prints.
"""
from __future__ import annotations

import os
import re

__all__ = ["run_sft", "run_dpo", "leak_rate", "refusal_rate"]

REFUSAL = re.compile(r"\b(sorry|can't|cannot|can not|not allowed|unable|won't|confidential)\b", re.IGNORECASE)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def leak_rate(replies, pairs) -> float:
    """Share of replies that state their prompt's secret (the rule of ``secret_pairs``)."""
    from lmbook.tune.tasks import reveals_secret

    return sum(reveals_secret(r, p.secret) for r, p in zip(replies, pairs)) / len(pairs)


def refusal_rate(replies) -> float:
    """Share of replies with a refusal word (sorry, can't, cannot, not allowed, unable, ...)."""
    return sum(REFUSAL.search(r) is not None for r in replies) / len(replies)


def run_sft(preset=None, *, steps: int | None = None, lora: bool = True, out: str = "runs/tune-sft",
            evaluate: bool = True, progress: bool = True, model=None, tok=None) -> dict:
    """Instruction-tune on ``spam_task``: held-out accuracy (label likelihood, exact greedy reply)
    before and after, time, CPU time, trainable parameters. ``result["model"]`` is the tuned model."""
    from lmbook.tune.evaluate import label_accuracy, reply_accuracy
    from lmbook.tune.lora import lora_config
    from lmbook.tune.model import load_chat_model
    from lmbook.tune.presets import get_tune_preset
    from lmbook.tune.sft import train_sft
    from lmbook.tune.tasks import spam_task

    pre = get_tune_preset(preset)
    if model is None:
        tok, model = load_chat_model(pre.source, verbose=_is_main())
    task = spam_task(pre.n_train, pre.n_eval, tokenizer=tok, max_message_tokens=pre.max_message_tokens,
                     seed=pre.seed)
    measure = evaluate and _is_main()
    res = {"preset": pre.name, "task": repr(task)}

    def score(prefix, m):
        res[f"{prefix}_label_accuracy"] = label_accuracy(m, tok, task.eval, task.labels, progress=progress)
        res[f"{prefix}_reply_accuracy"], replies = reply_accuracy(m, tok, task.eval, progress=progress)
        print(f"{prefix}: label-likelihood accuracy {res[f'{prefix}_label_accuracy']:.3f}, exact-reply "
              f"accuracy {res[f'{prefix}_reply_accuracy']:.3f} on {len(task.eval)} held-out messages; "
              f"first replies {replies[:3]}")

    if measure:
        score("before", model)
    cfg = lora_config(pre.lora_r, pre.lora_alpha, pre.lora_targets, pre.lora_dropout) if lora else None
    fit = train_sft(model, tok, task.train, steps=steps or pre.sft_steps, batch_size=pre.sft_batch_size,
                    lr=pre.sft_lr if lora else pre.full_ft_lr, lora=cfg, output_dir=out, seed=pre.seed,
                    progress=progress)
    res.update(steps=fit.steps, seconds=fit.seconds, cpu_seconds=fit.cpu_seconds, trainable=fit.trainable,
               total=fit.total, losses=fit.losses, peak_rss_gib=fit.peak_rss_gib)
    if measure:
        score("after", fit.trainer.model)
    res["model"], res["tokenizer"], res["trainer"] = fit.trainer.model, tok, fit.trainer
    return res


def run_dpo(preset=None, *, steps: int | None = None, out: str = "runs/tune-dpo", evaluate: bool = True,
            progress: bool = True, model=None, tok=None, max_new_tokens: int = 24, mix: int = 0,
            sentiment_per_class: int | None = None, **dpo_config) -> dict:
    """Preference-tune with LoRA on ``secret_pairs`` (chosen: a refusal; rejected: the secret).
    Measured on held-out prompts (other secrets): the leak rate of greedy replies before and after,
    the same for rephrased requests, preference accuracy (implicit reward margin > 0), the KL of the
    tuned model to the reference on its own replies, the refusal rate on unrelated questions, and the
    sentiment task's label accuracy (it must not get worse). ``mix``: that many sentiment pairs from
    the training split (``sentiment_pairs``) shuffled in among the training pairs;
    ``sentiment_per_class``: held-out reviews per class for the drift check (default: half of the
    preset's ``dpo_eval_prompts``); other keywords go to TRL's ``DPOConfig`` (e.g.
    ``loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0]`` adds the chosen replies' SFT loss)."""
    import random

    from lmbook.tune.dpo import implicit_rewards, train_dpo
    from lmbook.tune.evaluate import greedy_replies, label_accuracy
    from lmbook.tune.lora import lora_config
    from lmbook.tune.model import load_chat_model
    from lmbook.tune.presets import get_tune_preset
    from lmbook.tune.tasks import (REPHRASED_QUESTIONS, secret_pairs, sentiment_pairs, sentiment_task,
                                   unrelated_prompts)

    pre = get_tune_preset(preset)
    if model is None:
        tok, model = load_chat_model(pre.source, verbose=_is_main())
    n, m = pre.dpo_pairs, pre.dpo_eval_prompts
    train, held = secret_pairs(n, seed=pre.seed), secret_pairs(m, seed=pre.seed, offset=n)
    if mix:
        train = train + sentiment_pairs(mix, seed=pre.seed)
        random.Random(pre.seed).shuffle(train)
    rephrased = secret_pairs(m, questions=REPHRASED_QUESTIONS, seed=pre.seed, offset=n + m)
    other = unrelated_prompts(m, seed=pre.seed, offset=n + 2 * m)
    sentiment = sentiment_task(sentiment_per_class or m // 2, seed=pre.seed)
    measure = evaluate and _is_main()
    res = {"preset": pre.name, "pairs": n, "mixed_in": mix, "held_out": m}
    gen = lambda mod, ps: greedy_replies(mod, tok, [p.prompt for p in ps], max_new_tokens=max_new_tokens,  # noqa: E731
                                         progress=progress)

    def score(prefix, mod):
        r = res[f"{prefix}_replies"] = gen(mod, held)
        res[f"{prefix}_leak_rate"] = leak_rate(r, held)
        res[f"{prefix}_rephrased_leak_rate"] = leak_rate(gen(mod, rephrased), rephrased)
        res[f"{prefix}_unrelated_refusal_rate"] = refusal_rate(gen(mod, other))
        res[f"{prefix}_sentiment_accuracy"] = label_accuracy(mod, tok, sentiment.eval, sentiment.labels,
                                                              progress=progress)
        print(f"{prefix}: secret stated in {res[f'{prefix}_leak_rate']:.0%} of {m} held-out replies, "
              f"{res[f'{prefix}_rephrased_leak_rate']:.0%} of rephrased ones; refusals to unrelated "
              f"questions {res[f'{prefix}_unrelated_refusal_rate']:.0%}; sentiment label accuracy "
              f"{res[f'{prefix}_sentiment_accuracy']:.3f}; first reply {r[0]!r}")

    if measure:
        score("before", model)
    cfg = lora_config(pre.lora_r, pre.lora_alpha, pre.lora_targets, pre.lora_dropout)
    fit = train_dpo(model, tok, train, steps=steps or pre.dpo_steps, batch_size=pre.dpo_batch_size,
                    lr=pre.dpo_lr, beta=pre.dpo_beta, lora=cfg, output_dir=out, seed=pre.seed, progress=progress,
                    **dpo_config)
    tuned = fit.trainer.model
    res.update(steps=fit.steps, seconds=fit.seconds, cpu_seconds=fit.cpu_seconds, losses=fit.losses)
    if measure:
        score("after", tuned)
        chosen, rejected = implicit_rewards(tuned, tuned, tok, held, beta=pre.dpo_beta)
        res["preference_accuracy"] = (chosen > rejected).float().mean().item()
        res["mean_margin"] = (chosen - rejected).mean().item()
        res["kl_held_out"] = _kl_to_base(tuned, tok, [p.prompt for p in held], res["after_replies"])
        print(f"preference accuracy {res['preference_accuracy']:.3f} (margin > 0) on {m} held-out pairs, mean "
              f"margin {res['mean_margin']:.2f}; KL(tuned || reference) {res['kl_held_out']:.3f} nats per reply token")
    res["model"], res["tokenizer"], res["trainer"] = tuned, tok, fit.trainer
    return res


def _kl_to_base(peft_model, tok, prompts, replies) -> float:
    """KL of a peft model to itself with the adapter off, on the given replies."""
    from lmbook.tune.evaluate import mean_kl

    class _Base:  # the reference forward: the same weights, adapter disabled
        def __init__(self, m):
            self.m = m

        def __call__(self, **kw):
            with self.m.disable_adapter():
                return self.m(**kw)

    return mean_kl(peft_model, _Base(peft_model), tok, prompts, replies)
