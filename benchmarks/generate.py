"""Generation speed: tokens/s for greedy decoding of 200 new tokens from one prompt (batch 1).

Contenders, in one process, on one CPU thread by default:
  - lmbook's Llama with the packaged SmolLM2-135M-Instruct weights (``lmbook.pretrained.load_llm``
    converted by ``lmbook.models.llama_from_hf``), through ``lmbook.generate.generate`` with the
    KV cache and without it (every step recomputes the whole context);
  - transformers' ``LlamaForCausalLM.generate(do_sample=False)`` on the same weights (its own cache);
  - lmbook's GPT at chapter 4's ``cpu`` preset size (random weights: speed does not depend on
    them; vocabulary of 76 characters, context ``--gpt-block`` tokens), with and without the cache.

The prompt is a chat question through SmolLM2's chat template. Every contender first makes
``--warmup-tokens`` tokens untimed; then ``--repeats`` timed rounds run the contenders one after
the other, so that a change in machine load hits all of them, and the median time per contender
is reported. The slow no-cache contenders run in the first ``--no-cache-repeats`` rounds only
(default 1: the Llama without a cache takes minutes). ``eos`` is not used: every run makes
exactly ``--new-tokens`` tokens. The greedy tokens of the three SmolLM2 contenders (and of the
two GPT ones) are compared and printed as a check.

    python benchmarks/generate.py                 # 1 thread, 200 new tokens, 3 repeats
    python benchmarks/generate.py --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--new-tokens", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    ap.add_argument("--no-cache-repeats", type=int, default=1, help="rounds that include the no-cache runs")
    ap.add_argument("--warmup-tokens", type=int, default=5, help="untimed tokens per contender first")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--gpt-block", type=int, default=256,
                    help="GPT context; must hold prompt + new tokens so the cache is used throughout")
    ap.add_argument("--skip-no-cache", action="store_true", help="leave out the slow no-cache Llama run")
    args = ap.parse_args()

    import transformers

    import lmbook
    from lmbook.generate import generate
    from lmbook.models import GPT, GPTConfig, llama_from_hf
    from lmbook.pretrained import load_llm
    from lmbook.train import get_preset

    lmbook.setup(seed=0, threads=args.threads, device="cpu", verbose=False)
    n = args.new_tokens
    tok, hf = load_llm(verbose=False)
    ours = llama_from_hf(hf).eval()
    chat = [{"role": "user", "content": "Explain in a few sentences why the sky is blue."}]
    text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]  # (1, T)
    p = get_preset("cpu")
    gpt_cfg = GPTConfig(vocab_size=76, block_size=args.gpt_block, n_layer=p.n_layer, n_head=p.n_head,
                        n_embd=p.n_embd, dropout=0.0)
    if ids.shape[1] + n > gpt_cfg.block_size:
        ap.error(f"--gpt-block must hold the {ids.shape[1]}-token prompt and {n} new tokens")
    gpt = GPT(gpt_cfg).eval()
    gpt_ids = ids % gpt_cfg.vocab_size  # a prompt of the same length

    hf.generation_config.eos_token_id = None  # no stop at <|im_end|>: n tokens, as lmbook's generate

    def hf_generate(n):
        with torch.no_grad():
            return hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                               pad_token_id=tok.pad_token_id)

    contenders = {
        "lmbook Llama, KV cache": lambda n: generate(ours, ids, n, greedy=True),
        "lmbook Llama, no cache": lambda n: generate(ours, ids, n, greedy=True, use_cache=False),
        "transformers generate": hf_generate,
        f"lmbook GPT {p.n_layer}x{p.n_embd}, KV cache": lambda n: generate(gpt, gpt_ids, n, greedy=True),
        f"lmbook GPT {p.n_layer}x{p.n_embd}, no cache": lambda n: generate(gpt, gpt_ids, n, greedy=True,
                                                                             use_cache=False),
    }
    if args.skip_no_cache:
        del contenders["lmbook Llama, no cache"]
    print(f"SmolLM2-135M-Instruct ({ours.num_parameters() / 1e6:.1f}M parameters, float32), prompt "
          f"{ids.shape[1]} tokens, {n} new tokens, greedy, batch 1; GPT {gpt.num_parameters() / 1e6:.2f}M "
          f"parameters; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    outputs, times = {}, {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        fn(args.warmup_tokens)
    for r in range(args.repeats):
        for name, fn in contenders.items():
            if "no cache" in name and r >= args.no_cache_repeats:
                continue
            t, outputs[name] = timed(lambda: fn(n))
            times[name].append(t)
            print(f"  round {r + 1}: {name}: {t:.2f} s", flush=True)
    load = os.getloadavg()[0]

    llama_ref = outputs["lmbook Llama, KV cache"]
    same = {name: torch.equal(out, llama_ref) for name, out in outputs.items() if "GPT" not in name}
    print(f"greedy tokens identical to lmbook Llama with the cache: {same}")
    gpt_names = [k for k in contenders if "GPT" in k]
    print(f"GPT tokens identical with and without the cache: {torch.equal(outputs[gpt_names[0]], outputs[gpt_names[-1]])}")
    print(f"\n{'contender':32s} {'median s':>9s} {'tokens/s':>9s}   all runs (s)")
    med = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:32s} {med[name]:9.2f} {n / med[name]:9.1f}   {', '.join(f'{t:.2f}' for t in ts)}")
    print()
    c, h = med["lmbook Llama, KV cache"], med["transformers generate"]
    if "lmbook Llama, no cache" in med:
        print(f"Llama: with cache / without = {med['lmbook Llama, no cache'] / c:.1f}x (tokens/s ratio)")
    print(f"Llama with cache / transformers generate = {h / c:.2f}x")
    print(f"GPT: with cache / without = {med[gpt_names[-1]] / med[gpt_names[0]]:.1f}x")
    print(f"load average (1 min) after the runs: {load:.2f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
