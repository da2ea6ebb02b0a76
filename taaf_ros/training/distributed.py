"""Training on several processes with torch.distributed, as ``torchrun`` starts them.

``torchrun --standalone --nproc_per_node N train_ead.py ...`` sets RANK, WORLD_SIZE and the
rendezvous; :func:`init_distributed` then joins the process group (gloo on CPU, nccl on CUDA).
Every rank draws the same global batch (same shuffling and augmentation generator, so a
resumed or a one-process run sees the same batches) and trains on its own contiguous share of
it; DistributedDataParallel averages the gradients. The balanced loss's batch statistics are
summed over the ranks first (:meth:`Distributed.all_reduce_sum`), so every rank computes the
same coefficients and applies the same learning-rate factors. Rank 0 alone evaluates, writes
checkpoints and reports; the others wait at a barrier.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: rank, world size (1 when not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of n (sizes differ by at most 1)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of ``x`` over the ranks (``x`` itself when not distributed)."""
        if not self.enabled:
            return x
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes in the environment; a plain run gets
    ``Distributed()`` (rank 0 of 1) and no process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank=dist.get_rank(), world=dist.get_world_size())


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
