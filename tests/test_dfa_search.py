"""`shortest_to_accept` and `trim` (vectorised) agree with plain FIFO searches over every
(state, byte) edge — the reference implementations below — on random DFAs."""
from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen.automata.bytedfa import DEAD, reversed_edges, shortest_to_accept, trim


def _reference_search(transitions: np.ndarray, accepting: np.ndarray):
    n = len(transitions)
    dist, step = np.full(n, -1), np.full(n, -1)
    preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for s in range(n):
        for b in range(256):
            if transitions[s, b] >= 0:
                preds[transitions[s, b]].append((s, b))
    queue = deque(int(s) for s in np.flatnonzero(accepting))
    dist[list(queue)] = 0
    while queue:
        t = queue.popleft()
        for s, b in preds[t]:
            if dist[s] < 0:
                dist[s], step[s] = dist[t] + 1, b
                queue.append(s)
    return dist, step


def _reference_trim(transitions: np.ndarray, accepting: np.ndarray, initial: int):
    live = _reference_search(transitions, accepting)[0] >= 0
    if not live[initial]:
        return None
    order, index = [initial], {initial: 0}
    for s in order:
        for t in transitions[s]:
            if t >= 0 and live[t] and int(t) not in index:
                index[int(t)] = len(order)
                order.append(int(t))
    table = np.array([[index[t] if t >= 0 and live[t] else DEAD for t in transitions[s]]
                      for s in order], np.int32)
    return table, accepting[order]


@st.composite
def dfas(draw):
    n = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.002, 0.02, 0.3]))
    table = np.where(rng.random((n, 256)) < density, rng.integers(0, n, (n, 256)), DEAD)
    accepting = rng.random(n) < draw(st.sampled_from([0.0, 0.2, 0.6]))
    return table.astype(np.int32), accepting, int(rng.integers(0, n))


@settings(max_examples=300, deadline=None)
@given(dfas())
def test_search_and_trim_match_the_plain_searches(dfa):
    table, accepting, initial = dfa
    dist, step = shortest_to_accept(table, accepting)
    want_dist, want_step = _reference_search(table, accepting)
    assert dist.tolist() == want_dist.tolist() and step.tolist() == want_step.tolist()
    want = _reference_trim(table, accepting, initial)
    for got in (trim(table, accepting, initial),
                trim(table, accepting, initial, reversed_edges(table))):
        if want is None:
            assert got.is_empty()
        else:
            assert got.initial == 0
            assert got.transitions.tolist() == want[0].tolist()
            assert got.accepting.tolist() == want[1].tolist()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 60), st.integers(1, 4), st.integers(0, 2**31), st.booleans(),
       st.booleans())
def test_unique_rows_matches_numpy(n, width, seed, huge, collide):
    """Rows deduplicated through mixed-radix codes (or, past 63 bits, a hash, or numpy's row
    unique where the hash collides) give back exactly the distinct rows, and an inverse that
    rebuilds the input."""
    from unittest import mock

    from structgen.schema import compile as schema_compile

    rng = np.random.default_rng(seed)
    radix = np.full(width, 2**40 if huge else 5, np.int64)
    rows = rng.integers(0, 5, (n, width)).astype(np.int64)
    with mock.patch.object(schema_compile, "_row_weights",
                           (lambda k: np.zeros(k, np.uint64)) if collide
                           else schema_compile._row_weights):
        uniq, inverse = schema_compile._unique_rows(rows, radix)
    assert sorted(map(tuple, uniq.tolist())) == sorted(set(map(tuple, rows.tolist())))
    assert np.array_equal(uniq[inverse], rows)
