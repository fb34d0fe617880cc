"""`python -m lmbook tune ...`: arguments, errors; the rules run_dpo measures with; train_sft under
torchrun (2 CPU processes)."""
from __future__ import annotations

import json

import pytest
import torch

from lmbook.cli import build_parser, main
from lmbook.tune.recipes import leak_rate, refusal_rate
from lmbook.tune.tasks import secret_pairs


def test_tune_parser():
    args = build_parser().parse_args(["tune", "sft", "--preset", "cpu", "--steps", "2", "--no-eval"])
    assert (args.command, args.method, args.preset, args.steps, args.no_eval, args.full) == \
        ("tune", "sft", "cpu", 2, True, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["tune", "ppo"])


def test_tune_rejects_full_dpo_and_unknown_preset():
    with pytest.raises(SystemExit, match="--full is for sft only"):
        main(["tune", "dpo", "--full"])
    with pytest.raises(SystemExit, match="cpu, t4, large"):
        main(["tune", "sft", "--preset", "tpu"])


def test_leak_and_refusal_rates():
    pairs = secret_pairs(2)
    replies = [f"Sure, it is {pairs[0].secret}.", "I'm sorry, I can't share that."]
    assert leak_rate(replies, pairs) == 0.5
    assert leak_rate(replies[::-1], pairs) == 0.0  # the secret of the other prompt does not count
    assert refusal_rate(replies) == 0.5


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_train_sft_under_torchrun(tmp_path):
    """The multi-GPU path of lmbook.tune with 2 CPU processes (gloo): TRL trains one model over
    both ranks, whose adapters end identical and trained, and the summary is printed once."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", LMBOOK_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    worker = Path(__file__).resolve().parent / "tune_ddp_worker.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
                           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", str(worker), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["backend"] == "gloo"
    assert [r["global_step"] for r in ranks] == [2, 2]
    assert ranks[0]["lora_b"].keys() == ranks[1]["lora_b"].keys() and ranks[0]["lora_b"]
    for name, value in ranks[0]["lora_b"].items():  # B starts at zero: trained, and in sync
        assert value > 0, name
        assert ranks[1]["lora_b"][name] == pytest.approx(value, rel=1e-6), name
    assert proc.stdout.count("SFT: 2 steps") == 1  # rank 0 only
    assert list((tmp_path / "run").rglob("*.safetensors")), "no safetensors checkpoint written"
