"""Data-parallel training under ``torchrun``: process group, device per rank, loss averaging.

``torchrun --nproc_per_node=N script.py`` starts N copies of a script and tells each its place
through environment variables (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). ``fit``
reads them: every process trains a DistributedDataParallel copy of the model on its own shard of
each batch (DistributedSampler), gradients are averaged across processes after ``backward``, and
only rank 0 shows progress and writes checkpoints. NCCL connects GPUs, gloo CPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    started_here: bool = False  # fit() initialised the process group and will tear it down

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def setup(device: torch.device) -> DistInfo:
    """Join the process group if torchrun started this process; single-process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                        dist.get_world_size(), started_here=False)
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size(),
                    started_here=True)


def current() -> DistInfo:
    """The process group this process is in (single-process if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                        dist.get_world_size())
    return DistInfo()


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun each process takes the GPU ``cuda:LOCAL_RANK``; CPUs are shared."""
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def teardown(info: DistInfo) -> None:
    if info.started_here and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``x`` over processes (``x`` itself without DDP)."""
    if not info.enabled:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / info.world_size


def sum_over_ranks(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if not info.enabled:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather_to_main(obj, info: DistInfo) -> list | None:
    """Every process's ``obj`` (picklable), in rank order, on rank 0; None on the others."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out if info.is_main else None


def broadcast_from_main(obj, info: DistInfo):
    """Rank 0's ``obj`` (picklable) on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
