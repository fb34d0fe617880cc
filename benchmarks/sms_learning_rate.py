"""Chapter 5's SMS fine-tuning at several learning rates: which ones learn to flag spam at all?

The run is exactly chapter 5's CPU run (chapters/05_bert_practice.ipynb, section 5.5): the
packaged all-MiniLM-L6-v2 with a new classification head (``lmbook.pretrained.load_bert``), the
first 640 training messages of ``lmbook.data.load_sms_spam()`` (seed 0), 40 steps of batch 16
through ``lmbook.train.fit`` (10% warm-up, cosine decay to 0, weight decay 0.01, betas
(0.9, 0.999), gradients clipped at norm 1, ``max_length=64``), then predictions on the 453 test
messages. Only the learning rate changes, and the seed of the new head's random initialisation
(``--head-seeds``): the chapter draws its head from the global RNG after many other cells, so its
head is not one of these, and a conclusion should hold for every head seed tried.

For every (learning rate, head seed) it prints the mean training loss of the last 4 steps, how
many test messages are predicted spam (56 are spam), spam precision and recall, accuracy and the
wall time; then the load average. Defaults: three learning rates x two head seeds, six runs of
40 training steps and 453 predictions each. At the chapter's stored speed (1.6 s per step on one
thread) a run takes about 70 s, the defaults about 7 minutes; the quick check below, 2 runs:

    python benchmarks/sms_learning_rate.py
    python benchmarks/sms_learning_rate.py --lrs 5e-5 1e-4 --head-seeds 0

Measured (2 CPU cores shared with other jobs, load average 6 to 13, so 2 to 4 minutes per run,
21 minutes in all; torch 2.13.0+cpu, transformers 5.24.0, one thread):

          lr head seed train loss  flagged spam prec spam rec accuracy
       3e-05         0      0.427        0     0.000    0.000    0.876
       3e-05         1      0.422        0     0.000    0.000    0.876
       5e-05         0      0.286        0     0.000    0.000    0.876
       5e-05         1      0.268        0     0.000    0.000    0.876
       1e-04         0      0.083       54     0.926    0.893    0.978
       1e-04         1      0.051       54     0.944    0.911    0.982

At 3e-5 and 5e-5 every run predicts ham for all 453 test messages (accuracy 0.876 = the share of
ham); at 1e-4 both runs flag 54 messages and find about 90% of the spam.
"""
from __future__ import annotations

import argparse
import os
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lrs", type=float, nargs="+", default=[3e-5, 5e-5, 1e-4],
                    help="peak learning rates to try (default: 3e-5 5e-5 1e-4)")
    ap.add_argument("--head-seeds", type=int, nargs="+", default=[0, 1],
                    help="seeds of the classification head's initialisation (default: 0 1)")
    ap.add_argument("--train", type=int, default=640, help="training messages (default 640)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args()
    if args.train < args.batch_size:
        ap.error(f"--train ({args.train}) must be at least --batch-size ({args.batch_size})")

    import torch

    import lmbook
    from lmbook.data import ClassificationCollator, load_sms_spam
    from lmbook.metrics import precision_recall_f1, predict
    from lmbook.pretrained import load_bert
    from lmbook.train import fit

    device = lmbook.setup(threads=args.threads, device="cpu")
    sms = load_sms_spam()
    train = sms["train"].select(range(args.train))
    steps = args.train // args.batch_size
    print(f"{len(train)} training messages ({sum(train['label'])} spam), {steps} steps of "
          f"{args.batch_size}; test: {len(sms['test'])} messages ({sum(sms['test']['label'])} spam)")
    print(f"{'lr':>8} {'head seed':>9} {'train loss':>10} {'flagged':>8} {'spam prec':>9} "
          f"{'spam rec':>8} {'accuracy':>8} {'time':>6}")
    for lr in args.lrs:
        for head_seed in args.head_seeds:
            torch.manual_seed(head_seed)  # the new head's weights are drawn from this
            tokenizer, model = load_bert("classification", num_labels=2, verbose=False)
            collator = ClassificationCollator(tokenizer, max_length=64)
            start = time.perf_counter()
            history = fit(model, train, collate_fn=collator, steps=steps,
                          batch_size=args.batch_size, lr=lr, warmup_steps=steps // 10,
                          min_lr_ratio=0.0, weight_decay=0.01, betas=(0.9, 0.999),
                          grad_clip=1.0, preset="cpu", device=device, seed=0, progress=False)
            pred = predict(model, sms["test"], collator)
            seconds = time.perf_counter() - start
            per = precision_recall_f1(pred.labels, pred.preds, 2)
            loss = sum(history.train_loss[-4:]) / 4
            print(f"{lr:>8.0e} {head_seed:>9} {loss:>10.3f} {int(pred.preds.sum()):>8} "
                  f"{per['precision'][1]:>9.3f} {per['recall'][1]:>8.3f} {pred.accuracy:>8.3f} "
                  f"{seconds:>5.0f}s", flush=True)
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
