"""How long lmbook.pretrained.load_llm takes, and how much memory: the first load (the packaged
GGUF de-quantised and the cache written) and a later load (the cache read), each in a fresh
process on one CPU thread, with an empty cache folder; then the greedy answer to one question.

    .venv/bin/python benchmarks/load_llm.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

QUESTION = "What is the capital of France? Answer in one sentence."

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
from lmbook.pretrained import encode_chat, load_llm
t1, c1 = time.perf_counter(), time.process_time()
tokenizer, model = load_llm(verbose=False)
t2, c2 = time.perf_counter(), time.process_time()
out = {"import_s": t1 - t0, "load_s": t2 - t1, "load_cpu_s": c2 - c1,
       "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
if sys.argv[1] == "answer":
    batch = encode_chat(tokenizer, sys.argv[2], max_new_tokens=20)
    t3 = time.perf_counter()
    with torch.no_grad():
        ids = model.generate(**batch, max_new_tokens=20, do_sample=False)
    out["generate_s"] = time.perf_counter() - t3
    new = ids[0, batch["input_ids"].shape[1]:]
    out["new_tokens"] = len(new)
    out["answer"] = tokenizer.decode(new, skip_special_tokens=True)
print(json.dumps(out))
"""


def run(cache: str, mode: str) -> dict:
    env = dict(os.environ, LMBOOK_CACHE=cache, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", CHILD, mode, QUESTION], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        first = run(cache, "load")
        later = run(cache, "answer")
    print("load_llm() on one CPU thread, each in a fresh process (import of torch+lmbook not included);"
          " wall time, CPU time of the process (less sensitive to a busy machine), peak RSS:")
    print(f"  first load (de-quantise GGUF + write cache): {first['load_s']:5.1f} s wall, {first['load_cpu_s']:5.1f} s CPU,"
          f" peak RSS {first['peak_rss_mib']:,.0f} MiB")
    print(f"  later load (read the safetensors cache):     {later['load_s']:5.1f} s wall, {later['load_cpu_s']:5.1f} s CPU,"
          f" peak RSS {later['peak_rss_mib']:,.0f} MiB (with generation below)")
    print(f"  import torch + lmbook.pretrained: {later['import_s']:.1f} s")
    print(f"Greedy answer ({later['new_tokens']} new tokens, {later['generate_s']:.2f} s) to {QUESTION!r}:")
    print(f"  {later['answer']!r}")


if __name__ == "__main__":
    main()
