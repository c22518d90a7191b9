"""Requests → segments → packed forward passes under a token budget; pure index planning, no torch.

A *segment* is one context followed by one branch per continuation that shares it:
`ctx + cont_1[:-1] + cont_2[:-1] + ...`. Each branch attends to the whole context and causally to itself, and its
position ids continue from the context length, so it sees exactly `ctx + cont_j[:-1]`, as if scored alone; the
context is computed once for every choice. Segments are packed, longest first and best-fit, into rows, and rows of
similar fill share a forward pass, so little of a pass is padding; each token carries (segment, branch) labels from
which `score.attention_mask` builds the block mask. Every scored token knows its slot in the output, so results land
in request order whatever the packing (the plan is invertible).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from logprob.tokenize import Request

#: Shortest row a forward pass packs segments into. Attention work per token grows with the row length, so rows stay
#: short unless a segment is longer; short segments then share a row instead of each padding one. (128 halves the
#: attention work of 100-token items and helped with one thread, but not with two on a busy machine.)
ROW_TOKENS = 256


@dataclass(frozen=True)
class Segment:
    """A context and the requests (indices into the request list) scored as branches after it."""

    context_ids: tuple[int, ...]
    requests: tuple[int, ...]
    branches: tuple[tuple[int, ...], ...]  # each request's continuation ids

    @property
    def length(self) -> int:
        """Tokens the segment occupies in a row: the context plus every continuation but its last token."""
        return len(self.context_ids) + sum(len(b) - 1 for b in self.branches)


@dataclass(frozen=True)
class PackedBatch:
    """One forward pass. (B, R) token grids plus where to read and write results.

    `segment` is unique per segment within the batch (padding gets its own negative label per token); `branch` is 0 for
    context tokens and j >= 1 for the j-th branch of a segment. `needed` are flat indices into the (B*R) grid whose
    hidden states predict a scored token; scored token k is predicted at `needed[target_needed[k]]`, has id
    `target_ids[k]` and is written to output slot `target_slots[k]`.
    """

    input_ids: np.ndarray  # (B, R) int64
    position_ids: np.ndarray  # (B, R) int64
    segment: np.ndarray  # (B, R) int64
    branch: np.ndarray  # (B, R) int64
    needed: np.ndarray  # (N_u,) int64
    target_needed: np.ndarray  # (N_t,) int64
    target_ids: np.ndarray  # (N_t,) int64
    target_slots: np.ndarray  # (N_t,) int64
    n_requests: int
    causal: bool  # every row is one unpadded sequence (a segment with at most one branch): a plain causal mask is exact


def make_segments(requests: Sequence[Request], share_contexts: bool, budget: int) -> list[Segment]:
    """Group requests with identical context ids (after the boundary rule and truncation) into shared segments.

    Only identical ids share. The boundary rule gives every choice of an item the same context ids (`enc` of the
    context without its trailing whitespace, whatever the choice), so the choices of an item differ only after left
    truncation, which keeps fewer context tokens for a longer continuation: such a choice gets its own segment.
    A group is split so that no segment exceeds `budget` tokens (a single request longer than that stays whole).

    >>> from logprob.tokenize import Request
    >>> reqs = [Request(0, 0, (1, 2), (3, 4)), Request(0, 1, (1, 2), (5,)), Request(1, 0, (9,), (3,))]
    >>> [(s.requests, s.length) for s in make_segments(reqs, True, budget=100)]
    [((0, 1), 3), ((2,), 1)]
    >>> [s.requests for s in make_segments(reqs, False, budget=100)]
    [(0,), (1,), (2,)]
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, r in enumerate(requests):
        groups.setdefault(r.context_ids if share_contexts else (k, *r.context_ids), []).append(k)
    segments = []
    for members in groups.values():
        ctx = requests[members[0]].context_ids
        part: list[int] = []
        used = len(ctx)
        for k in members:
            extra = len(requests[k].continuation_ids) - 1
            if part and used + extra > budget:
                segments.append(_segment(requests, ctx, part))
                part, used = [], len(ctx)
            part.append(k)
            used += extra
        segments.append(_segment(requests, ctx, part))
    return segments


def _segment(requests: Sequence[Request], ctx: tuple[int, ...], members: list[int]) -> Segment:
    return Segment(ctx, tuple(members), tuple(requests[k].continuation_ids for k in members))


def pack(lengths: Sequence[int], budget: int, row_tokens: int = ROW_TOKENS,
         stack: bool = True) -> list[list[list[int]]]:
    """Plan forward passes: a list of passes, each a list of rows, each a list of segment indices.

    Rows first: segments longest first, each into the fullest row that still has room for it (best-fit decreasing)
    in rows of min(row_tokens, budget) tokens; a longer segment has a row of its own. Rows thus come out nearly full.
    Then passes: rows by fill, fullest first, each pass taking as many rows as fit the budget at the width of its first
    (widest) row, at least one. A pass is padded only by the fill differences of neighbouring rows, it holds at most
    max(budget, longest segment) padded tokens, and the first pass is the largest (out-of-memory errors hit it first).
    With `stack=False` every row holds one segment (right-padded rows, for models that cannot take a packed mask).

    >>> pack([5, 2, 9, 3], budget=12, row_tokens=5)
    [[[2]], [[0], [3, 1]]]
    >>> pack([5, 2, 9, 3], budget=12, row_tokens=5, stack=False)
    [[[2]], [[0], [3]], [[1]]]
    """
    if budget < 1:
        raise ValueError(f"token_budget: expected a positive token count, got {budget}")
    cap = min(row_tokens, budget)
    rows: list[list[int]] = []
    fill: list[int] = []
    room: list[tuple[int, int]] = []  # sorted (free tokens, row index) of rows that may take another segment
    for s in sorted(range(len(lengths)), key=lambda s: -lengths[s]):
        n = lengths[s]
        at = bisect.bisect_left(room, (n, -1))  # the row with the least room that still fits n
        if stack and at < len(room):
            free, r = room.pop(at)
            rows[r].append(s)
            fill[r] += n
            bisect.insort(room, (free - n, r))
        else:
            rows.append([s])
            fill.append(n)
            bisect.insort(room, (cap - n, len(rows) - 1))
    passes: list[list[list[int]]] = []
    order = sorted(range(len(rows)), key=lambda r: -fill[r])
    at = 0
    while at < len(order):
        take = max(1, budget // fill[order[at]])
        passes.append([rows[r] for r in order[at:at + take]])
        at += take
    return passes


def build_batch(segments: Sequence[Segment], rows: Sequence[Sequence[int]], slots: np.ndarray) -> PackedBatch:
    """Lay the planned rows out as token grids. `slots[k]` is the first output slot of request k's tokens."""
    width = max(sum(segments[s].length for s in row) for row in rows)
    n_rows = len(rows)
    input_ids = np.zeros((n_rows, width), dtype=np.int64)
    position_ids = np.zeros((n_rows, width), dtype=np.int64)
    segment = -1 - np.arange(n_rows * width, dtype=np.int64).reshape(n_rows, width)  # padding: alone, own label
    branch = np.zeros((n_rows, width), dtype=np.int64)
    causal = True
    needed: list[int] = []
    target_needed: list[np.ndarray] = []
    target_ids: list[tuple[int, ...]] = []
    target_slots: list[np.ndarray] = []
    n_requests = 0
    for b, row in enumerate(rows):
        at = 0
        causal &= len(row) == 1 and len(segments[row[0]].branches) <= 1 and segments[row[0]].length == width
        for s in row:
            seg = segments[s]
            n = len(seg.context_ids)
            input_ids[b, at:at + n] = seg.context_ids
            position_ids[b, at:at + n] = np.arange(n)
            segment[b, at:at + seg.length] = s
            last_ctx = len(needed)
            needed.append(b * width + at + n - 1)
            at += n
            for j, (k, cont) in enumerate(zip(seg.requests, seg.branches, strict=True), start=1):
                m = len(cont) - 1  # the branch feeds cont[:-1]; cont[t] is predicted at position t-1 (ctx last for t=0)
                input_ids[b, at:at + m] = cont[:-1]
                position_ids[b, at:at + m] = np.arange(n, n + m)
                branch[b, at:at + m] = j
                first = len(needed)
                needed.extend(range(b * width + at, b * width + at + m))
                target_needed.append(np.concatenate([[last_ctx], np.arange(first, first + m)]))
                target_ids.append(cont)
                target_slots.append(slots[k] + np.arange(m + 1))
                at += m
                n_requests += 1
    return PackedBatch(
        input_ids, position_ids, segment, branch,
        needed=np.asarray(needed, dtype=np.int64),
        target_needed=np.concatenate(target_needed).astype(np.int64),
        target_ids=np.fromiter((t for ids in target_ids for t in ids), dtype=np.int64),
        target_slots=np.concatenate(target_slots).astype(np.int64),
        n_requests=n_requests,
        causal=causal,
    )
