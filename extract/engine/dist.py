"""Several processes, one cache: ``torchrun --nproc_per_node N -m probekit extract ...``.

torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE``; with more
than one process, :func:`init` joins the process group (nccl on CUDA, gloo on CPU). Every
rank computes its share of the chunks and writes its own shards; rank 0 waits at a
barrier, checks every shard and writes the one manifest. Without torchrun this is a
1-process world and nothing is initialised. torch is imported only when needed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

from probekit.core.errors import ProbekitError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    initialised: bool = False  # whether this process group was started here (and is ours to end)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mine(self, index: int) -> bool:
        """Whether the chunk with this global index is this rank's work (round robin)."""
        return index % self.size == self.rank


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ProbekitError(f"environment {name}={value!r} is not an integer (torchrun sets it).") from None


def from_env() -> World:
    """The world torchrun describes in the environment (1 process when it does not)."""
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    local_size = _env_int("LOCAL_WORLD_SIZE", size)
    if not 0 <= rank < size:
        raise ProbekitError(f"environment RANK={rank} is outside 0..{size - 1} (WORLD_SIZE={size}).")
    return World(rank, size, local_rank, local_size)


def init(world: World, device: str, timeout_s: int = 3600) -> World:
    """Join the process group when there are several ranks; return the world, marked initialised."""
    if world.size == 1:
        return world
    import torch.distributed as dist

    if dist.is_initialized():
        return world
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ProbekitError(f"WORLD_SIZE={world.size} but {var} is not set: start the ranks with "
                                "torchrun --nproc_per_node N -m probekit extract ...")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        import torch

        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    logger.info("extract: rank %d of %d joined the %s process group", world.rank, world.size, backend)
    return World(world.rank, world.size, world.local_rank, world.local_size, initialised=True)


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def finish(world: World) -> None:
    if world.initialised:
        import torch.distributed as dist

        dist.destroy_process_group()
