"""Data parallel on accelerate and torch.distributed: which process this is, the plan that splits one model's work
across processes balanced by tokens, and the collectives that carry plans and results to rank 0.

**Launch.** `torchrun --nproc_per_node N $(which scalelens) score ...` (or `accelerate launch`, where it starts
several processes) sets WORLD_SIZE; `join` then forms the group through accelerate's `PartialState` (NCCL on GPUs,
one per process, `cuda:LOCAL_RANK`; gloo on CPUs). Started alone, `join` returns `SINGLE` and imports nothing: the
single-process path pays no distributed cost, and every collective below is the identity there.

**Plan.** Every rank loads the same model. Its work is cut into pieces: the scoring of one item (all its choices
together, so a context is still encoded once for them) and the generation of one generative item. A piece costs its
tokens: for scoring, the context's plus every continuation's (lm-eval's encoding, `logprob.tokenize`); for
generation, the prompt's plus `max_new_tokens`. `plan_shares` deals the pieces out greedily, longest first, each
to the rank with the least tokens so far (Graham's longest-processing-time rule, ties to the lower index): every
piece lands on exactly one rank, and the most loaded rank carries at most one piece more than the least loaded one
(at most the largest piece's tokens). Scoring and generation are dealt separately, as their tokens cost differently.
The plan depends only on the work, never on timing, so every rank computes the same plan without talking.

**Results.** Each rank scores its share (an empty share is fine: the rank still takes part in every collective,
so no one waits for it); errors are exchanged first (`all_gather`), so a failure on any rank stops every rank with
the same message; then rank 0 gathers the rows (`gather`) and puts them in item order, so the table equals one
process's row for row. Only rank 0 reads or writes the output folder (it alone holds the folder's lock).
"""

from __future__ import annotations

import datetime
import heapq
import os
from collections.abc import Sequence
from dataclasses import dataclass

#: Environment variables a launcher sets to the number of processes (torchrun and accelerate: WORLD_SIZE; MPI
#: launchers: the others), as accelerate reads them.
SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
#: How long a collective waits for the slowest rank (loading a large checkpoint, rank 0 writing a large table).
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place in the run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes of this run on this machine
    device: str | None = None  # this process's device under a launcher ("cuda:3", "cpu"); None alone
    backend: str | None = None  # "nccl", "gloo"; None alone

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj):
        """Rank 0's `obj`, on every rank."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list | None:
        """Every rank's `obj` in rank order, on rank 0 (None elsewhere)."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def all_gather(self, obj) -> list:
        """Every rank's `obj` in rank order, on every rank."""
        if self.size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.size
        dist.all_gather_object(out, obj)
        return out


SINGLE = World()


def leave(world: World) -> None:
    """Leave the process group together: wait for every rank, then tear the group down. Without it a rank that
    exits while another still holds its gloo connection can be aborted ("terminate called without an active
    exception", SIGABRT), failing a run that finished."""
    if world.size == 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def launched_size(environ=os.environ) -> int:
    """The number of processes a launcher started (1 when none did).

    >>> launched_size({"WORLD_SIZE": "8"}), launched_size({})
    (8, 1)
    """
    for name in SIZE_VARIABLES:
        if environ.get(name, "").strip().isdigit():
            return int(environ[name])
    return 1


def join(device: str, device_map: str | None = None) -> World:
    """This process's `World`: SINGLE when started alone (nothing imported), else the group formed through
    accelerate's PartialState, with one device per process. `device` is `--device`: auto or cuda take
    cuda:LOCAL_RANK (CPUs when there is no GPU), cpu keeps every process on the CPU."""
    size = launched_size()
    if size <= 1:
        return SINGLE
    if device.startswith("cuda:"):
        raise ValueError(f"--device {device}: under {size} processes each takes its own GPU (cuda:LOCAL_RANK); "
                         "use --device auto or cuda")
    if device_map is not None:
        raise ValueError(f"--device-map {device_map}: spreads one model over the devices of one process, but "
                         f"{size} processes were launched; run one process (without torchrun) for --device-map")
    import torch
    from accelerate import PartialState

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device cuda: requested but CUDA is not available (torch {torch.__version__})")
    cpu = device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=TIMEOUT)
    if state.num_processes != size:
        raise ValueError(f"the launcher started {size} processes, but accelerate formed a group of "
                         f"{state.num_processes}; start them with torchrun --nproc_per_node {size}")
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
    if cpu:
        where = "cpu"
    else:
        have = torch.cuda.device_count()
        if local_size > have:
            raise ValueError(f"{local_size} processes on this machine but {have} GPU(s): one GPU per process; "
                             f"launch --nproc_per_node {have} or fewer (or use --device cpu)")
        where = f"cuda:{state.local_process_index}"
        torch.cuda.set_device(where)
    import torch.distributed as dist

    return World(state.process_index, state.num_processes, state.local_process_index, local_size, where,
                 dist.get_backend())


def plan_shares(costs: Sequence[int], n_ranks: int) -> list[list[int]]:
    """Deal pieces (their `costs`) to `n_ranks` ranks: longest first, each to the least-loaded rank (ties: the
    lower rank), so the loads differ by at most the largest cost. Each share lists piece indices in order.

    >>> plan_shares([5, 9, 2, 7, 3], 2)  # 9 → r0, 7 → r1, 5 → r1 (7 < 9), 3 → r0 (9 < 12), 2 → r0 (12 = 12)
    [[1, 2, 4], [0, 3]]
    >>> plan_shares([4], 3)  # a rank may get nothing
    [[0], [], []]
    """
    if n_ranks < 1:
        raise ValueError(f"n_ranks: expected at least 1, got {n_ranks}")
    loads = [(0, r) for r in range(n_ranks)]  # a heap of (tokens so far, rank)
    shares: list[list[int]] = [[] for _ in range(n_ranks)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        load, r = heapq.heappop(loads)
        shares[r].append(i)
        heapq.heappush(loads, (load + costs[i], r))
    return [sorted(s) for s in shares]


def scoring_costs(tokenizer, items: Sequence, max_length: int) -> list[int]:
    """Tokens of each item's scoring piece: its context (once: choices share it) plus every continuation, each part
    capped at `max_length` (left truncation)."""
    from logprob.tokenize import encode_pairs

    pairs = [(item.context, c) for item in items for c in item.continuations]
    encoded = iter(encode_pairs(tokenizer, pairs)) if pairs else iter(())
    costs = []
    for item in items:
        parts = [next(encoded) for _ in item.continuations]
        context = max((len(ctx) for ctx, _ in parts), default=0)
        costs.append(min(context, max_length) + sum(min(len(cont), max_length) for _, cont in parts))
    return costs


def generation_costs(tokenizer, items: Sequence, max_length: int, max_new_tokens: int) -> list[int]:
    """Tokens of each generative item's piece: its prompt (capped so that max_new_tokens fit) plus max_new_tokens."""
    if not items:
        return []
    prompts = tokenizer([item.context for item in items])["input_ids"]
    room = max(1, max_length - max_new_tokens)
    return [min(len(p), room) + max_new_tokens for p in prompts]
