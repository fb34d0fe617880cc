"""Chapter 4's small BERT-style MLM (section 4.2) at several context lengths: where is the plateau?

The run is the chapter's: its character tokenizer (the corpus's characters + the mask symbol),
the first million characters of the 34 training plays and the first 100,000 of the four
held-out tragedies (``lmbook.data.shakespeare_text``), a post-LN ``BertForMaskedLM`` with the
``cpu`` preset's depth and width (4 layers, 4 heads, width 128, no dropout), BERT's corruption
(``mask_tokens``: 15% chosen, 80/10/10), ``lmbook.train.fit`` with the preset's learning rate
schedule. Only the context changes, with the windows per step set so that every step reads
768 characters (64 x 12, 32 x 24, 16 x 48). The validation loss (nats per chosen character, on
one fixed corruption of the held-out text) is printed every ``--eval-every`` steps.

    python benchmarks/mlm_context.py                          # contexts 64, 32, 16; 600 steps
    python benchmarks/mlm_context.py --contexts 64 --steps 1500

Measured with the defaults (2 CPU cores shared with other jobs, load average about 12;
torch 2.13.0+cpu, one thread; validation loss in nats per chosen character at steps 150, 300,
450 and 600; the unigram entropy of the training characters is 3.32):

    context  64 x 12 windows: validation loss 150: 3.26, 300: 3.23, 450: 3.15, 600: 3.13  (343 s)
    context  32 x 24 windows: validation loss 150: 3.34, 300: 3.12, 450: 3.15, 600: 3.11  (459 s)
    context  16 x 48 windows: validation loss 150: 3.17, 300: 2.93, 450: 2.66, 600: 2.60  (249 s)

With 64 and 32 characters the MLM is still on the plateau after 600 steps; with 16 it leaves it
between steps 150 and 300 (the chapter's run).
"""
from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--contexts", type=int, nargs="+", default=[64, 32, 16])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    import lmbook
    from lmbook.data import CharTokenizer, LMBlocks, LMWindows, mask_tokens, shakespeare_plays, shakespeare_text
    from lmbook.models import BertConfig, BertForMaskedLM
    from lmbook.train import fit, get_preset

    lmbook.setup(threads=args.threads)
    p = get_preset("cpu").replace(steps=args.steps, lr=2e-3, eval_every=args.eval_every)
    text = shakespeare_text()
    plays = [q.name for q in shakespeare_plays()]
    held_out = plays[plays.index("macbeth"):]
    train_text = shakespeare_text(plays[:-len(held_out)])[:1_000_000]
    val_text = shakespeare_text(held_out)[:100_000]
    MASK = "█"
    tok = CharTokenizer(sorted(set(text)) + [MASK])
    V, mask_id = tok.vocab_size, tok.stoi[MASK]
    train_ids, val_ids = torch.tensor(tok.encode(train_text)), torch.tensor(tok.encode(val_text))
    chars_per_step = p.batch_size * p.block_size                                  # 768
    for block in args.contexts:
        batch = chars_per_step // block
        masking = torch.Generator().manual_seed(0)

        def collate(examples):
            ids = torch.stack([e["input_ids"] for e in examples])                 # (B, T)
            x, y = mask_tokens(ids, V, mask_id, special_ids=[mask_id], generator=masking)
            return {"input_ids": x, "labels": y}

        vw = LMBlocks(val_ids, block)
        clean = torch.stack([vw[i]["input_ids"] for i in range(len(vw))])
        x, y = mask_tokens(clean, V, mask_id, special_ids=[mask_id], generator=torch.Generator().manual_seed(1))
        val = [{"input_ids": a, "labels": b} for a, b in zip(x, y)]
        torch.manual_seed(0)
        model = BertForMaskedLM(BertConfig(
            vocab_size=V, hidden_size=p.n_embd, num_hidden_layers=p.n_layer, num_attention_heads=p.n_head,
            intermediate_size=4 * p.n_embd, max_position_embeddings=block, pad_token_id=mask_id,
            hidden_dropout_prob=p.dropout, attention_probs_dropout_prob=p.dropout))
        windows = LMWindows(train_ids, block, num_samples=p.steps * batch, seed=1)
        t0 = time.perf_counter()
        h = fit(model, windows, val_data=val, steps=p.steps, batch_size=batch, collate_fn=collate,
                preset=p, progress=False)
        curve = ", ".join(f"{s}: {v:.2f}" for s, v in h.val)
        print(f"context {block:3d} x {batch:2d} windows: validation loss {curve}  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
