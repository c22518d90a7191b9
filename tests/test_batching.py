"""Packing plans: budget respected, every segment placed once, grids laid out as worked out by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest

from logprob.batching import build_batch, make_segments, pack
from logprob.tokenize import Request


def test_pack_respects_budget_and_places_every_segment_once():
    rng = random.Random(1)
    lengths = [rng.randint(1, 300) for _ in range(200)]
    for budget, row in [(64, 16), (512, 256), (4096, 256), (100, 1000)]:
        plan = pack(lengths, budget, row)
        placed = sorted(s for rows in plan for r in rows for s in r)
        assert placed == list(range(len(lengths)))
        for rows in plan:
            width = max(sum(lengths[s] for s in r) for r in rows)
            longest = max(lengths[s] for r in rows for s in r)
            assert len(rows) * width <= max(budget, longest)  # padded tokens of a pass


def test_pack_goes_longest_first():
    plan = pack([3, 50, 7, 20], budget=50, row_tokens=10)
    assert plan[0] == [[1]]  # 50 alone; then rows of 20: [20], [7, 3]
    assert plan[1] == [[3], [2, 0]]


def test_pack_rejects_bad_budget():
    with pytest.raises(ValueError, match="token_budget"):
        pack([1], budget=0)


def test_make_segments_groups_identical_contexts_only_and_splits_by_budget():
    reqs = [Request(0, 0, (1, 2, 3), (4, 5)), Request(0, 1, (1, 2, 3), (6,)), Request(0, 2, (2, 3), (7, 8, 9)),
            Request(1, 0, (1, 2, 3), (9, 9, 9))]
    segs = make_segments(reqs, share_contexts=True, budget=100)
    assert [s.requests for s in segs] == [(0, 1, 3), (2,)]  # same ids share, even across items; (2, 3) alone
    assert segs[0].length == 3 + 1 + 0 + 2
    # budget 5: context 3 + branch 1 (=4) fits, adding 0 still fits (4), adding 2 would make 6 > 5 → split
    assert [s.requests for s in make_segments(reqs, True, budget=5)] == [(0, 1), (3,), (2,)]


def test_build_batch_layout_by_hand():
    # segment 0: ctx [1, 2], branches cont [3, 4] and [5]; segment 1: ctx [6], cont [7, 8]
    reqs = [Request(0, 0, (1, 2), (3, 4)), Request(0, 1, (1, 2), (5,)), Request(1, 0, (6,), (7, 8))]
    segs = make_segments(reqs, True, budget=100)
    slots = np.array([0, 2, 3])  # request token offsets in the output: 2 + 1 + 2 tokens
    batch = build_batch(segs, [[0], [1]], slots)
    assert batch.input_ids.tolist() == [[1, 2, 3], [6, 7, 0]]  # row 1 padded by one token
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 1, 0]]
    assert batch.branch.tolist() == [[0, 0, 1], [0, 1, 0]]
    assert batch.segment[0].tolist() == [0, 0, 0] and batch.segment[1, :2].tolist() == [1, 1]
    assert batch.segment[1, 2] < 0  # padding has its own label
    # needed (flat in 2x3 grid): seg0 ctx last (1), branch-1 position (2); seg1 ctx last (3), branch position (4)
    assert batch.needed.tolist() == [1, 2, 3, 4]
    assert batch.target_ids.tolist() == [3, 4, 5, 7, 8]
    assert batch.needed[batch.target_needed].tolist() == [1, 2, 1, 3, 4]  # cont [5] is predicted at ctx last too
    assert batch.target_slots.tolist() == [0, 1, 2, 3, 4]
    assert batch.n_requests == 3


def test_plan_is_invertible_under_any_packing():
    rng = random.Random(2)
    reqs = [Request(i // 3, i % 3, tuple(rng.randint(0, 9) for _ in range(rng.randint(1, 9))),
                    tuple(rng.randint(0, 9) for _ in range(rng.randint(1, 4)))) for i in range(60)]
    n_tokens = np.array([len(r.continuation_ids) for r in reqs])
    slots = np.concatenate([[0], np.cumsum(n_tokens)[:-1]])
    expected = np.concatenate([r.continuation_ids for r in reqs])
    for share, budget in [(True, 8), (False, 16), (True, 1000)]:
        segs = make_segments(reqs, share, budget)
        out = np.full(expected.shape, -1)
        for rows in pack([s.length for s in segs], budget, row_tokens=8):
            batch = build_batch(segs, rows, slots)
            out[batch.target_slots] = batch.target_ids
        assert (out == expected).all()


def test_pack_fills_rows_before_padding_a_pass():
    # rows of 10: best fit pairs 6+4, 6+4, 5+5 (full rows, no padding); spreading the segments over the 4 rows the
    # budget allows (one each, then 4s into the emptiest) would give rows 6, 6, 9, 9: 36 grid tokens for 30
    lengths = [6, 6, 5, 5, 4, 4]
    plan = pack(lengths, budget=40, row_tokens=10)
    assert plan == [[[0, 4], [1, 5], [2, 3]]]
    widths = [max(sum(lengths[s] for s in r) for r in rows) * len(rows) for rows in plan]
    assert widths == [30]  # 30 grid tokens for 30 real ones


def test_build_batch_marks_plain_causal_rows_only():
    reqs = [Request(0, 0, (1, 2), (3, 4)), Request(1, 0, (5, 6), (7, 8)), Request(2, 0, (1, 2), (3,)),
            Request(2, 1, (1, 2), (4,))]
    slots = np.array([0, 2, 4, 5])
    segs = make_segments(reqs, True, budget=100)  # (0,), (1,): one branch each; (2, 3): two branches on (1, 2)
    assert [s.requests for s in segs] == [(0, 2, 3), (1,)]
    segs = make_segments(reqs, False, budget=100)  # one request per segment
    assert build_batch(segs, [[0], [1]], slots).causal  # two rows, one 3-token sequence each, no padding
    assert not build_batch(segs, [[0, 1]], slots).causal  # two sequences in one row need the block mask
    assert not build_batch(segs, [[0], [2]], slots).causal  # row 1 (2 tokens) is padded to 3
    shared = make_segments(reqs, True, budget=100)
    assert not build_batch(shared, [[0]], slots).causal  # branches after a shared context need the branch mask
