"""Data-parallel rationale builds: under `accelerate launch` or `torchrun`, every process attributes its share of the
examples into the shared attribution cache, and the first process gathers them all and writes the outputs.

The share is whole batches, dealt round-robin (batch j of `batch_size` examples goes to process j % world), so each
batch is the batch a single process would run: from an empty cache the records equal a single-process build's to
the last bit (a batch's padding can change the last float digits of an attribution, so splitting mid-batch would
not). Processes append to the one cache file under an exclusive lock (`kdviz.records.RecordLog.add`), so their
lines never interleave. The one collective, a gloo all-reduce of (examples from the cache, cancelled), is also the
barrier: gloo runs on CPU, so it needs no GPU and no NCCL, and it waits as long as the slowest process takes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from kdviz.config import ModelSpec
from kdviz.errors import InputError

T = TypeVar("T")

# How long the first process to finish waits for the others at the gather: a share of a big build takes hours, and
# a process that fails ends the launch (torchrun stops the others), so this only bounds a process that hangs.
GATHER_TIMEOUT = timedelta(hours=48)


@dataclass(frozen=True)
class Shard:
    """This process's place in a launch: its `rank` among `world` processes, and its GPU index (`local_rank`)."""

    rank: int
    world: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, index: int, batch_size: int) -> bool:
        """Returns whether the item at `index` of the build's list falls in one of this process's batches."""
        return (index // batch_size) % self.world == self.rank

    def share(self, items: Sequence[T], batch_size: int) -> list[T]:
        """Returns this process's items: those in its batches, in order."""
        return [item for i, item in enumerate(items) if self.owns(i, batch_size)]


def current_shard() -> Shard | None:
    """Returns this process's shard when a launcher started several processes (WORLD_SIZE > 1), else None.

    Raises:
        InputError: WORLD_SIZE says several processes but the launcher's other variables are missing or invalid.
    """
    world = os.environ.get("WORLD_SIZE", "1")
    if world == "1":
        return None
    try:
        rank, size = int(os.environ["RANK"]), int(world)
        local = int(os.environ.get("LOCAL_RANK", rank))
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    except (KeyError, ValueError) as exc:
        raise InputError(f"WORLD_SIZE={world} but RANK is missing or not a number: start with torchrun or accelerate "
                         "launch, or unset WORLD_SIZE") from exc  # fmt: skip
    if missing or not 0 <= rank < size:
        raise InputError(f"WORLD_SIZE={world} but {' and '.join(missing) or 'RANK'} is not set right: start with "
                         "torchrun or accelerate launch, or unset WORLD_SIZE")  # fmt: skip
    return Shard(rank, size, local)


def is_main_process() -> bool:
    """Returns whether this process writes a build's outputs: the only process, or the first of a launch."""
    shard = current_shard()
    return shard is None or shard.is_main


def rank_spec(spec: ModelSpec, shard: Shard | None) -> ModelSpec:
    """Returns the spec this process loads: with several processes and GPUs, "auto" or "cuda" becomes this
    process's own GPU (cuda:LOCAL_RANK), so the processes do not all load onto the first one.

    Raises:
        InputError: --device-map auto with several processes (each would spread its copy over every GPU).
    """
    if shard is None:
        return spec
    if spec.device_map is not None:
        raise InputError("--device-map auto spreads one model over every GPU, so it cannot run in several processes: "
                         "launch one process with --device-map auto, or several (one GPU each) without it")  # fmt: skip
    import torch

    if spec.device in ("auto", "cuda") and torch.cuda.is_available():
        return dataclasses.replace(spec, device=f"cuda:{shard.local_rank % torch.cuda.device_count()}")
    return spec


def gather_counts(shard: Shard, counts: Sequence[int]) -> list[int]:
    """Returns `counts` summed over every process of the launch; returns only when all of them have called it.

    It joins the launch's process group (gloo) when none is set up, and leaves it again afterwards.
    """
    import torch
    import torch.distributed as dist

    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world, timeout=GATHER_TIMEOUT)
    try:
        total = torch.tensor(list(counts), dtype=torch.long)
        # A launcher's own group may be NCCL, which cannot reduce a CPU tensor: reduce over a gloo group then.
        group = None if joined or dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
        dist.all_reduce(total, group=group)
        return total.tolist()
    finally:
        if joined:
            dist.destroy_process_group()
