"""fit() under torchrun: 2 CPU processes (gloo), each accumulating 2 micro-batches, reach the
weights and losses of one process that sees the same global batch at once; also with uneven
numbers of targets, with a failing torch.compile, and across a crash and resume."""
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


needs_dist = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")


def torchrun(out, mode="basic") -> list[dict]:
    """Run ddp_worker.py in ``mode`` on 2 gloo processes; returns what each rank wrote."""
    env = dict(os.environ, OMP_NUM_THREADS="1", LMBOOK_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
           "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
           str(HERE / "ddp_worker.py"), str(out), mode]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def one_process(**kw):
    """ddp_worker.run in this process, on 1 thread like the workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ddp_worker.run(**kw)
    finally:
        torch.set_num_threads(threads)


@needs_dist
def test_two_gloo_processes_match_one_process(tmp_path):
    ranks = torchrun(tmp_path)
    assert [r["world_size"] for r in ranks] == [2, 2]
    h0, h1 = (r["history"] for r in ranks)
    assert h0["train_loss"] == h1["train_loss"] and h0["val"] == h1["val"]  # averaged over ranks
    assert h0["info"]["global_batch"] == 8 and h0["examples"][-1] == 6 * 8
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"

    model, single = one_process(batch_size=8)  # one process, the same global batch
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


@needs_dist
def test_uneven_targets_across_micro_batches_and_processes_give_the_big_batch_gradient(tmp_path):
    """Half the examples have one target, half eight: each step's gradient (2 processes x 2
    micro-batches of 2) equals that of one batch of 8, the mean over all its targets."""
    ranks = torchrun(tmp_path, "uneven")
    grads = [torch.load(tmp_path / f"grads{r}.pt") for r in (0, 1)]
    assert len(grads[0]) == 6
    for a, b in zip(*grads):  # DDP: every process steps with the same gradient
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    want, handle = ddp_worker.record_gradients()
    try:
        model, single = one_process(batch_size=8, data=ddp_worker.make_uneven_data(64, 0), grad_clip=None)
    finally:
        handle.remove()
    for step, (got, ref) in enumerate(zip(grads[0], want)):
        for x, y in zip(got, ref):
            torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-4, msg=lambda m: f"step {step + 1}: {m}")
    h0 = ranks[0]["history"]
    assert h0["train_loss"] == pytest.approx(single.train_loss, rel=1e-5)  # the big batch's loss
    assert [v for _, v in h0["val"]] == pytest.approx([v for _, v in single.val], rel=1e-5)


@needs_dist
def test_failed_compilation_falls_back_under_ddp_with_accumulation(tmp_path):
    """compile="auto" whose compiled code fails (training and evaluation graphs): every process
    warns once, trains eagerly and ends where an eager run ends."""
    ranks = torchrun(tmp_path, "compile")
    for r in ranks:
        fallbacks = [w for w in r["warnings"] if "torch.compile failed" in w]
        assert len(fallbacks) == 1 and "no C++ compiler" in fallbacks[0]
        assert r["history"]["info"]["compile"] is False and len(r["history"]["train_loss"]) == 6
        assert [s for s, _ in r["history"]["val"]] == [3, 6]
    model, single = one_process(batch_size=8)
    w0 = torch.load(tmp_path / "rank0.pt")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(w0[k], v, atol=1e-5, rtol=1e-4)


@needs_dist
def test_resume_restores_every_processes_generators(tmp_path):
    """After a crash and a resume, each process's torch, NumPy and Python generators continue
    exactly as in an uninterrupted run (the processes' streams differ from each other)."""
    ranks = torchrun(tmp_path, "resume")
    for r in ranks:
        assert r["resumed"] == r["uninterrupted"]
        assert r["same_weights"]
    for key in ("torch", "numpy", "python"):
        assert ranks[0]["resumed"][key] != ranks[1]["resumed"][key]
    state = torch.load(tmp_path / "ckpt" / "state-0000006.pt", weights_only=True)
    assert len(state["rng_ranks"]) == 2
