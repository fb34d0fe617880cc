"""fit() under torchrun: 2 CPU processes (gloo), each accumulating 2 micro-batches, reach the
weights and losses of one process that sees the same global batch at once."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ddp_worker  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")
def test_two_gloo_processes_match_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", LMBOOK_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
           str(HERE / "ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    h0, h1 = (r["history"] for r in ranks)
    assert h0["train_loss"] == h1["train_loss"] and h0["val"] == h1["val"]  # averaged over ranks
    assert h0["info"]["global_batch"] == 8 and h0["examples"][-1] == 6 * 8
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, single = ddp_worker.run(batch_size=8)  # one process, the same global batch
    finally:
        torch.set_num_threads(threads)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(w0[k], v, atol=1e-5, rtol=1e-4)
    assert h0["train_loss"] == pytest.approx(single.train_loss, rel=1e-5)
    assert [s for s, _ in h0["val"]] == [3, 6]
    assert [v for _, v in h0["val"]] == pytest.approx([v for _, v in single.val], rel=1e-5)
    assert single.train_loss[-1] < single.train_loss[0]
    # rank 0 alone wrote one checkpoint, after the last step
    ckpt = tmp_path / "ckpt"
    assert json.loads((ckpt / "latest.json").read_text())["step"] == 6
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.json", "latest.json", "model-0000006.safetensors", "state-0000006.pt"]
