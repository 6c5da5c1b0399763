"""Where a run executes: the device, the process group (torchrun), autocast.

One process, or torchrun's DistributedDataParallel group: each process takes its share of the same
global batch, and the losses are computed on the gathered global batch (``gather``), so N processes
reproduce the single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass
class Runtime:
    """Device, process rank / count (torchrun), loader workers, compilation."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    rank: int = 0
    world: int = 1
    workers: int = 0
    compile: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def setup(cls, device: str = "auto", workers: int = 0, compile: bool = False) -> Runtime:
        """Read torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK); start the process group if > 1."""
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(device)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("runner.device is 'cuda' but torch sees no GPU; set runner.device: cpu or auto")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        return cls(dev, rank, world, workers, compile)

    def autocast(self, precision: str):
        """bf16 autocast of the forward passes (train.precision), a no-op context for fp32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class _GatherBatch(torch.autograd.Function):
    """All-gather along the batch axis; the backward hands each process the gradient of its own slice,
    summed over processes (every process computes the same loss on the gathered global batch, and DDP
    then averages, so the decoder receives exactly the single-process gradient)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), t.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather(t: torch.Tensor, rt: Runtime) -> torch.Tensor:
    """The global batch from every process's share (differentiable); the tensor itself with one process."""
    if rt.world == 1:
        return t
    if t.requires_grad:
        return _GatherBatch.apply(t)
    parts = [torch.empty_like(t) for _ in range(rt.world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def gather_objects(items: list, rt: Runtime) -> list:
    """Every process's list of picklable items, concatenated in rank order."""
    if rt.world == 1:
        return items
    shares = [None] * rt.world
    dist.all_gather_object(shares, items)
    return [x for share in shares for x in share]


def any_process(flag: bool, rt: Runtime) -> bool:
    """True when ``flag`` is set in any process (so that all stop together)."""
    if rt.world == 1:
        return flag
    t = torch.tensor([int(flag)], device=rt.device)
    dist.all_reduce(t)
    return bool(t.item())


def barrier(rt: Runtime) -> None:
    if rt.world > 1:
        dist.barrier()
