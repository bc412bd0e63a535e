"""Deterministic automata over bytes: the common currency between regexes and token masks.

Characters become UTF-8 byte sequences here, so partial characters split across tokens are just
intermediate DFA states and need no special handling anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Iterable, Sequence

import numpy as np

from ..vocab import native

DEAD = -1


class _Rows(dict):
    """A DFA's rows as tuples, each converted on first access (`rows[s]`, 0 <= s < n)."""

    def __init__(self, transitions: np.ndarray) -> None:
        super().__init__()
        self._transitions = transitions

    def __missing__(self, state: int) -> tuple[int, ...]:
        if not 0 <= state < len(self._transitions):
            raise IndexError(f"no DFA state {state}")
        row = self[state] = tuple(self._transitions[state].tolist())
        return row


@dataclass(frozen=True, eq=False)
class ByteDFA:
    """A trimmed DFA over bytes: every state can still reach an accepting state.

    `transitions[s, b]` is the next state or DEAD. Trimming is what makes masks exact: a token
    is allowed iff walking its bytes never hits DEAD.
    """

    transitions: np.ndarray  # int32, shape (n_states, 256)
    accepting: np.ndarray  # bool, shape (n_states,)
    initial: int

    @cached_property
    def rows(self) -> "_Rows":
        """`transitions[s]` as a tuple, by state: the per-token byte walk is ~10x faster than
        numpy scalar indexing. Each row is converted when first read: a fresh mask meets a
        few states of many new DFAs (converting whole DFAs was a tenth of MaskBench's mask
        time), and most DFAs of a schema compile are intermediate and never walked. Tuples,
        not lists: tuples of ints leave the cyclic collector's care once it has seen them."""
        return _Rows(self.transitions)

    @property
    def n_states(self) -> int:
        return int(self.transitions.shape[0])

    #: State pairs an inclusion question may explore before it answers "not known".
    INCLUDES_BUDGET = 4096

    def includes(self, big: int, small: int) -> bool:
        """Whether every string accepted from state `small` is accepted from `big` (searches
        skip what a wider state already covers). False also when not known within
        `INCLUDES_BUDGET` state pairs: a no is always safe. Cached per pair."""
        known = self._included.get((big, small))
        if known is None:
            known = self._included[(big, small)] = self._search_included(big, small)
        return known

    @cached_property
    def _included(self) -> dict[tuple[int, int], bool]:
        return {}

    def _search_included(self, big: int, small: int) -> bool:
        seen = {(small, big)}
        todo = [(small, big)]
        while todo:
            x, y = todo.pop()
            if self.accepting[x] and not self.accepting[y]:
                return False
            live = np.flatnonzero(self.transitions[x] >= 0)
            xs, ys = self.transitions[x, live], self.transitions[y, live]
            if (ys < 0).any():  # (trimmed: a live state accepts some string)
                return False
            for pair in set(zip(xs.tolist(), ys.tolist())) - seen:
                if len(seen) >= self.INCLUDES_BUDGET:
                    return False
                seen.add(pair)
                todo.append(pair)
        return True

    def walk(self, state: int, data: bytes) -> int:
        """State after reading `data` from `state` (which may be DEAD), or DEAD."""
        if state < 0:  # (an empty DFA's initial state)
            return DEAD
        rows = self.rows
        for b in data:
            state = rows[state][b]
            if state < 0:
                return DEAD
        return state

    def accepts(self, data: bytes) -> bool:
        s = self.walk(self.initial, data)
        return s != DEAD and bool(self.accepting[s])

    def is_empty(self) -> bool:
        return self.initial == DEAD

    def forced_bytes(self, state: int, limit: int = 4096) -> bytes:
        """The bytes every continuation from `state` must start with (stops at accepting states)."""
        out = bytearray()
        rows = self.rows
        while len(out) < limit and not self.accepting[state]:
            nexts = [(b, t) for b, t in enumerate(rows[state]) if t >= 0]
            if len(nexts) != 1:
                break
            b, state = nexts[0]
            out.append(b)
        return bytes(out)


Edges = tuple[np.ndarray, np.ndarray, np.ndarray]


def reversed_edges(transitions: np.ndarray) -> Edges:
    """(sources, bytes, offsets): the edges grouped by target (sorted by source, then byte,
    within a target; target t's are [offsets[t], offsets[t + 1])), what the backward searches
    of `shortest_to_accept` read. Worth computing once for searches of one table under
    several accepting sets (a schema's 15 key regions of one 4k-state product: ~30 ms each)."""
    n = transitions.shape[0]
    src, byte = np.nonzero(transitions >= 0)  # row-major: by source, then byte
    dst = transitions[src, byte]
    by_dst = np.argsort(dst, kind="stable")
    return src[by_dst], byte[by_dst], np.searchsorted(dst[by_dst], np.arange(n + 1))


def shortest_to_accept(transitions: np.ndarray, accepting: np.ndarray,
                       edges: Edges | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bytes to acceptance, first byte of such a shortest path) per state; -1 where acceptance
    is unreachable (or, for `step`, where the state accepts).

    Breadth-first backwards from the accepting states, one numpy step per distance: schema
    compiles trim and complete hundreds of key DFAs, and a Python loop over every (state, byte)
    edge cost more than the rest of the compile. Ties go to the earliest-reached successor and
    then the smallest byte, as a plain FIFO search would pick them.
    """
    n = transitions.shape[0]
    src, byte, bounds = reversed_edges(transitions) if edges is None else edges
    if len(src) <= SMALL_SEARCH_EDGES:
        return _shortest_small(src, byte, bounds, accepting)
    dist = np.full(n, -1, np.int64)
    step = np.full(n, -1, np.int64)
    frontier = np.flatnonzero(accepting)
    dist[frontier] = 0
    d = 0
    while frontier.size:
        d += 1
        idx = _ranges(bounds[frontier], bounds[frontier + 1])
        s, b = src[idx], byte[idx]
        fresh = dist[s] < 0
        s, b = s[fresh], b[fresh]
        first = np.sort(np.unique(s, return_index=True)[1])
        frontier = s[first]
        dist[frontier] = d
        step[frontier] = b[first]
    return dist, step


# Below this many edges the search runs as a Python loop over them: a key DFA (~50 states,
# a few hundred edges with escapes) costs ~8 numpy calls per distance level otherwise, and
# every terminal of every schema is searched once (a quarter of time-to-first-mask).
SMALL_SEARCH_EDGES = 4096


def _shortest_small(src: np.ndarray, byte: np.ndarray, bounds: np.ndarray,
                    accepting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`shortest_to_accept` over the reversed edges (sources and bytes grouped by target,
    `bounds` their offsets), as a FIFO search: the same distances, bytes and ties."""
    n = len(bounds) - 1
    srcs, bytes_, lim = src.tolist(), byte.tolist(), bounds.tolist()
    dist = [-1] * n
    step = [-1] * n
    frontier = np.flatnonzero(accepting).tolist()
    for t in frontier:
        dist[t] = 0
    d = 0
    while frontier:
        d += 1
        nxt = []
        for t in frontier:
            for k in range(lim[t], lim[t + 1]):
                s = srcs[k]
                if dist[s] < 0:
                    dist[s] = d
                    step[s] = bytes_[k]
                    nxt.append(s)
        frontier = nxt
    return np.array(dist, np.int64), np.array(step, np.int64)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of range(starts[i], ends[i]) for every i, in order."""
    counts = ends - starts
    offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
    return np.arange(int(counts.sum())) + offsets


def trim(transitions: np.ndarray, accepting: np.ndarray, initial: int,
         edges: Edges | None = None) -> ByteDFA:
    """Drop states that cannot reach acceptance and renumber the rest from `initial`, in
    breadth-first order (by state, then byte; one numpy step per level). `edges`: the table's
    `reversed_edges`, when known."""
    n = transitions.shape[0]
    live = shortest_to_accept(transitions, accepting, edges)[0] >= 0
    if not live[initial]:
        return ByteDFA(np.full((1, 256), DEAD, np.int32), np.zeros(1, bool), DEAD)
    seen = np.zeros(n, bool)
    seen[initial] = True
    order = [np.array([initial])]
    frontier = order[0]
    while frontier.size:
        t = transitions[frontier].ravel()
        t = t[t >= 0]
        t = t[live[t] & ~seen[t]]
        frontier = t[np.sort(np.unique(t, return_index=True)[1])]
        seen[frontier] = True
        order.append(frontier)
    states = np.concatenate(order)
    remap = np.full(n + 1, DEAD, np.int32)
    remap[states] = np.arange(len(states), dtype=np.int32)
    old = transitions[states]
    new = remap[np.where(old >= 0, old, n)]
    return ByteDFA(new.astype(np.int32), accepting[states].copy(), 0)


# --- characters → UTF-8 byte ranges -------------------------------------------------------

_MAX_CP = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)


def utf8_sequences(lo: int, hi: int) -> list[tuple[tuple[int, int], ...]]:
    """Cover code points lo..hi (surrogates excluded) by sequences of byte ranges.

    Each returned sequence is a tuple of inclusive (low, high) byte ranges whose cartesian
    product is exactly a set of UTF-8 encodings; together they encode exactly lo..hi.
    """
    out: list[tuple[tuple[int, int], ...]] = []
    stack = [(lo, hi)]
    while stack:
        lo, hi = stack.pop()
        if lo > hi:
            continue
        if lo <= _SURROGATES[1] and hi >= _SURROGATES[0]:
            stack.append((lo, _SURROGATES[0] - 1))
            stack.append((_SURROGATES[1] + 1, hi))
            continue
        split = False
        for boundary in (0x7F, 0x7FF, 0xFFFF):
            if lo <= boundary < hi:
                stack.append((lo, boundary))
                stack.append((boundary + 1, hi))
                split = True
                break
        if split:
            continue
        if hi <= 0x7F:
            out.append(((lo, hi),))
            continue
        n = len(chr(lo).encode("utf-8"))
        for i in range(1, n):
            m = (1 << (6 * i)) - 1
            if lo & ~m != hi & ~m:
                if lo & m != 0:
                    stack.append((lo, lo | m))
                    stack.append(((lo | m) + 1, hi))
                    split = True
                    break
                if hi & m != m:
                    stack.append((lo, (hi & ~m) - 1))
                    stack.append((hi & ~m, hi))
                    split = True
                    break
        if split:
            continue
        a, b = chr(lo).encode("utf-8"), chr(hi).encode("utf-8")
        out.append(tuple(zip(a, b)))
    return out


def ranges_of(codepoints: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted code points → maximal inclusive ranges."""
    out: list[tuple[int, int]] = []
    for c in sorted(codepoints):
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def complement_ranges(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    prev = 0
    for lo, hi in sorted(ranges):
        if lo > prev:
            out.append((prev, lo - 1))
        prev = max(prev, hi + 1)
    if prev <= _MAX_CP:
        out.append((prev, _MAX_CP))
    return out


def from_char_dfa(
    n_states: int,
    initial: int,
    accepting: Iterable[int],
    edges: dict[int, list[tuple[list[tuple[int, int]], int]]],
) -> ByteDFA:
    """Lift a DFA over code points to bytes.

    `edges[s]` lists (code point ranges, target) with disjoint ranges per state. Intermediate
    byte states are keyed by the set of (remaining byte ranges, target) still possible, so the
    same partial-character suffix is shared across all character states that use it.
    """
    rows: list[list[int]] = [[DEAD] * 256 for _ in range(n_states)]
    acc = [False] * n_states
    for s in accepting:
        acc[s] = True
    memo: dict[frozenset, int] = {}
    pending: list[tuple[int, frozenset]] = []

    def node_for(rest: frozenset) -> int:
        if rest not in memo:
            memo[rest] = len(rows)
            rows.append([DEAD] * 256)
            acc.append(False)
            pending.append((memo[rest], rest))
        return memo[rest]

    def fill(state: int, seqs: Iterable[tuple[tuple[tuple[int, int], ...], int]]) -> None:
        groups: dict[int, set] = {}
        row = rows[state]
        for seq, target in seqs:
            lo, hi = seq[0]
            if len(seq) == 1:
                row[lo:hi + 1] = [target] * (hi + 1 - lo)
                continue
            for b in range(lo, hi + 1):
                groups.setdefault(b, set()).add((seq[1:], target))
        for b, rest in groups.items():
            row[b] = node_for(frozenset(rest))

    sequences: dict[tuple[int, int], list[tuple[tuple[int, int], ...]]] = {}
    for s, out_edges in edges.items():
        seqs = []
        for ranges, target in out_edges:
            for lo_hi in ranges:
                got = sequences.get(lo_hi)
                if got is None:
                    got = sequences[lo_hi] = utf8_sequences(*lo_hi)
                seqs.extend((seq, target) for seq in got)
        fill(s, seqs)
    while pending:
        node, rest = pending.pop()
        fill(node, rest)
    return trim(np.array(rows, dtype=np.int32), np.array(acc, dtype=bool), initial)


# --- characters with several byte spellings (escapes) ---------------------------------------

# One spelling of a set of characters: the byte values allowed at each position, in order.
ByteSetSequence = tuple[tuple[int, ...], ...]


def utf8_byte_sets(lo: int, hi: int) -> list[ByteSetSequence]:
    """`utf8_sequences` with each byte range expanded to its byte values (surrogates excluded)."""
    return [tuple(tuple(range(a, b + 1)) for a, b in seq) for seq in utf8_sequences(lo, hi)]


def _spelling_template(spellings: Sequence[Sequence[ByteSetSequence]]) -> np.ndarray:
    """Byte states reading one character from a state whose i-th edge has `spellings[i]`.

    Row 0 is the character state itself, rows 1.. the partial-spelling states; an entry >= 0
    is a local row, DEAD, or -2 - i for "the character is complete: follow edge i". Partial
    states are keyed by the set of (remaining spelling, edge) still possible, so spellings that
    share a prefix (`\\u00`...) share states.
    """
    rows: list[list[int]] = [[DEAD] * 256]
    memo: dict[frozenset, int] = {}
    pending = [(0, frozenset((seq, i) for i, seqs in enumerate(spellings) for seq in seqs))]
    while pending:
        node, rest = pending.pop()
        row = rows[node]
        groups: dict[int, set] = {}
        for seq, edge in rest:
            for b in seq[0]:
                if len(seq) == 1:
                    if row[b] != DEAD and row[b] != -2 - edge:
                        raise ValueError("character spellings are not a prefix-free code")
                    row[b] = -2 - edge
                else:
                    groups.setdefault(b, set()).add((seq[1:], edge))
        for b, group in groups.items():
            if row[b] != DEAD:
                raise ValueError("character spellings are not a prefix-free code")
            key = frozenset(group)
            if key not in memo:
                memo[key] = len(rows)
                rows.append([DEAD] * 256)
                pending.append((memo[key], key))
            row[b] = memo[key]
    return np.array(rows, dtype=np.int32)


@lru_cache(maxsize=4096)
def _shape_template(
    shape: tuple[tuple[tuple[int, int], ...], ...],
    spell: Callable[[tuple[tuple[int, int], ...]], list[ByteSetSequence]],
) -> np.ndarray:
    """`_spelling_template` for edges with these ranges, shared across calls (the same shapes
    recur: a format under different length bounds, the same class in many patterns)."""
    return _spelling_template([spell(r) for r in shape])


def spelled_tables(
    n_states: int,
    initial: int,
    accepting: Iterable[int],
    edges: dict[int, list[tuple[tuple[tuple[int, int], ...], int]]],
    spell: Callable[[tuple[tuple[int, int], ...]], list[ByteSetSequence]],
    max_states: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Lift a DFA over code points to bytes when a character has several spellings (escapes).

    Returns (transitions, accepting) of the trimmed byte DFA with initial state 0, or None when
    its language is empty; the caller may extend the arrays before building the `ByteDFA`.
    `edges[s]` lists (code point ranges, target) with disjoint ranges per state; `spell(ranges)`
    gives every byte spelling of those characters (e.g. `utf8_byte_sets` plus escapes). The
    spellings of distinct characters must form a prefix-free code, so reading bytes stays
    deterministic. Characters with no spelling are dropped, then the character DFA is trimmed,
    which makes the byte DFA trimmed by construction (no byte-level trim pass).

    Speed: the partial-spelling states of a character state depend only on its edges' ranges,
    so they are built once per distinct edge shape and stamped out with numpy for every state
    of that shape (a length counter multiplies states, not shapes). Raises OverflowError when
    the byte DFA would exceed `max_states` states.
    """
    spelled: dict[tuple, list[ByteSetSequence]] = {}
    out_edges: list[list[tuple[tuple, int]]] = [[] for _ in range(n_states)]
    for s, es in edges.items():
        for ranges, t in es:
            ranges = tuple(ranges)
            if ranges not in spelled:
                spelled[ranges] = spell(ranges)
            if spelled[ranges]:
                out_edges[s].append((ranges, t))
    finals = set(accepting)
    # character-level trim: co-reachable from acceptance, then reachable from `initial` (BFS)
    preds: list[list[int]] = [[] for _ in range(n_states)]
    for s, es in enumerate(out_edges):
        for _, t in es:
            preds[t].append(s)
    live = set(finals)
    stack = list(finals)
    while stack:
        for s in preds[stack.pop()]:
            if s not in live:
                live.add(s)
                stack.append(s)
    if initial not in live:
        return None
    index = {initial: 0}
    order = [initial]
    k = 0
    while k < len(order):
        for _, t in out_edges[order[k]]:
            if t in live and t not in index:
                index[t] = len(order)
                order.append(t)
        k += 1
    # group character states by edge shape; each shape's template is built once
    shapes: dict[tuple, list[tuple[int, list[int]]]] = {}
    for s in order:
        kept = [(r, index[t]) for r, t in out_edges[s] if t in live]
        shape = tuple(r for r, _ in kept)
        shapes.setdefault(shape, []).append((index[s], [t for _, t in kept]))
    templates = {shape: _shape_template(shape, spell) for shape in shapes}
    total = len(order) + sum(
        len(members) * (templates[shape].shape[0] - 1) for shape, members in shapes.items()
    )
    if max_states is not None and total > max_states:
        raise OverflowError(f"the byte DFA would have {total} states (limit {max_states})")
    table = np.full((total, 256), DEAD, np.int32)
    next_free = len(order)
    for shape, members in shapes.items():
        tpl = templates[shape]
        m, n_inst = tpl.shape[0], len(members)
        entries = np.array([e for e, _ in members], dtype=np.int64)
        targets = np.array([ts for _, ts in members], dtype=np.int32).reshape(n_inst, len(shape))
        bases = next_free + np.arange(n_inst, dtype=np.int64) * (m - 1)
        is_slot = tpl <= -2
        block = np.where(tpl >= 1, bases[:, None, None] + tpl[None] - 1, DEAD)
        if len(shape):
            block = np.where(is_slot[None], targets[:, np.where(is_slot, -2 - tpl, 0)], block)
        table[entries] = block[:, 0]
        table[next_free : next_free + n_inst * (m - 1)] = block[:, 1:].reshape(-1, 256)
        next_free += n_inst * (m - 1)
    acc = np.zeros(total, bool)
    acc[[index[s] for s in order if s in finals]] = True
    return table, acc


EMPTY = ByteDFA(np.full((1, 256), DEAD, np.int32), np.zeros(1, bool), DEAD)  # no string at all


MAX_PRODUCT_STATES = 1 << 18


def byte_classes(*tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class of each byte, one representative byte per class): bytes whose columns agree in
    every table. Products and minimisation then work on a few columns instead of 256 (a JSON
    number DFA has about 15 distinct columns). Columns are grouped by a hash, then checked
    equal to their class's representative (exact grouping if a hash ever collided)."""
    cols = np.concatenate([t.T for t in tables], axis=1).astype(np.int64)  # (256, total states)
    weights = np.random.default_rng(1).integers(1, 2**63, size=cols.shape[1], dtype=np.uint64)
    h = (cols.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    _, first, cls = np.unique(h, return_index=True, return_inverse=True)
    cls = cls.reshape(-1)
    if not (cols[first[cls]] == cols).all():
        _, first, cls = np.unique(cols, axis=0, return_index=True, return_inverse=True)
        cls = cls.reshape(-1)
    return cls, first


def dfa_product(a: ByteDFA, b: ByteDFA, op: str, max_states: int | None = MAX_PRODUCT_STATES
                ) -> ByteDFA:
    """`a ∧ b`, `a ∧ ¬b` or `a ∨ b` of two byte DFAs (missing transitions = a dead sink),
    minimised.

    Breadth-first over reachable pairs, one numpy step per level over byte classes (a Python
    loop per pair took seconds on products of multipleOf automata). Raises OverflowError when
    more than `max_states` pairs are reachable, rather than spending minutes on them.
    """
    if a.is_empty() or b.is_empty():
        if op == "and":
            return EMPTY
        return b if op == "or" and a.is_empty() else a
    cls, reps = byte_classes(a.transitions, b.transitions)
    na, nb = a.n_states, b.n_states
    ra = np.vstack([np.where(a.transitions >= 0, a.transitions, na)[:, reps],
                    np.full((1, len(reps)), na, np.int64)]).astype(np.int64)
    rb = np.vstack([np.where(b.transitions >= 0, b.transitions, nb)[:, reps],
                    np.full((1, len(reps)), nb, np.int64)]).astype(np.int64)
    width = nb + 1
    start = a.initial * width + b.initial
    known = np.array([start], np.int64)  # codes pa * width + pb, sorted, with their ids
    known_ids = np.array([0], np.int64)
    frontier = np.array([start], np.int64)
    n = 1
    rows: list[np.ndarray] = []
    while frontier.size:
        codes = ra[frontier // width] * width + rb[frontier % width]  # (f, classes)
        pa, pb = codes // width, codes % width
        dead = {"and": (pa == na) | (pb == nb), "andnot": pa == na,
                "or": (pa == na) & (pb == nb)}[op]
        live = np.unique(codes[~dead])
        pos = np.minimum(np.searchsorted(known, live), len(known) - 1)
        fresh = live[known[pos] != live]
        fresh_ids = np.arange(n, n + len(fresh), dtype=np.int64)
        n += len(fresh)
        if max_states is not None and n > max_states:
            raise OverflowError(f"the product automaton would have more than {max_states} states")
        order = np.argsort(np.concatenate([known, fresh]), kind="stable")
        known = np.concatenate([known, fresh])[order]
        known_ids = np.concatenate([known_ids, fresh_ids])[order]
        ids = known_ids[np.minimum(np.searchsorted(known, codes), len(known) - 1)]
        rows.append(np.where(dead, DEAD, ids))
        frontier = fresh
    table = np.concatenate(rows)
    codes_of = np.empty(n, np.int64)
    codes_of[known_ids] = known
    fa = np.append(a.accepting, False)[codes_of // width]
    fb = np.append(b.accepting, False)[codes_of % width]
    accepting = {"and": fa & fb, "andnot": fa & ~fb, "or": fa | fb}[op]
    return minimize(table[:, cls].astype(np.int32), accepting, 0)


def minimize(transitions: np.ndarray, accepting: np.ndarray, initial: int,
             max_rounds: int = 64) -> ByteDFA:
    """The trimmed DFA with equivalent states merged (Moore's partition refinement, one numpy
    step per round over byte classes). Refinement needs about as many rounds as the longest
    string separating two states; past `max_rounds` (long counters such as maxLength chains,
    which are minimal anyway) the DFA is only trimmed.

    Each round hashes a state's block and its successors' blocks into one integer (sorting
    rows of integers was most of a product's time); the final partition is checked to be a
    congruence — same acceptance, successors in the same blocks — before states are merged,
    so a hash collision can only cost the merging, never change the language.
    """
    dfa = trim(transitions, accepting, initial)
    if dfa.is_empty():
        return dfa
    cls, reps = byte_classes(dfa.transitions)
    t = dfa.transitions[:, reps].astype(np.int64)
    weights = np.random.default_rng(0).integers(1, 2**63, size=len(reps) + 1, dtype=np.uint64)
    block = dfa.accepting.astype(np.int64)
    count = len(np.unique(block))
    for _ in range(max_rounds):
        succ = np.where(t >= 0, block[np.maximum(t, 0)], -1).astype(np.uint64)
        h = block.astype(np.uint64) * weights[0] + (succ * weights[1:]).sum(axis=1, dtype=np.uint64)
        _, block = np.unique(h, return_inverse=True)
        block = block.reshape(-1).astype(np.int64)
        new_count = int(block.max()) + 1
        if new_count == count:
            break
        count = new_count
    else:
        return dfa
    if count == dfa.n_states:
        return dfa
    first = np.unique(block, return_index=True)[1]  # each block's lowest state
    merged = np.where(t[first] >= 0, block[np.maximum(t[first], 0)], DEAD)
    succ = np.where(t >= 0, block[np.maximum(t, 0)], DEAD)
    if (succ != merged[block]).any() or (dfa.accepting != dfa.accepting[first][block]).any():
        return dfa  # a hash collision merged states that differ
    return trim(merged[:, cls].astype(np.int32), dfa.accepting[first], int(block[dfa.initial]))


class EndlessStates:
    """The states of a DFA with infinitely many accepted continuations: those that reach a
    cycle (the DFA is trimmed, so every state can still accept). Decided per state on demand,
    by a depth-first search that stops at the first cycle: key DFAs have hundreds of states
    and the tracker asks about a few (listing every state's successors cost ~2.5 ms per new
    key DFA, the largest part of Gemma-3's slowest MaskBench masks)."""

    def __init__(self, dfa: ByteDFA) -> None:
        # (the table, not the DFA: caches keyed weakly by the DFA must not keep it alive)
        self.transitions, self.initial = dfa.transitions, dfa.initial
        self._known: dict[int, bool] = {}
        # The same search compiled (`native`, ~3.5x faster), set up on the first search.
        self._compiled: native.EndlessSearch | None | bool = False

    def __contains__(self, state: int) -> bool:
        if state == DEAD:
            return False
        known = self._known.get(state)
        if known is None:
            compiled = self._compiled
            if compiled is False:
                compiled = self._compiled = (native.EndlessSearch(self.transitions)
                                             if native.available() else None)
            known = self._known[state] = (self._search(state) if compiled is None
                                          else compiled(state))
        return known

    def __bool__(self) -> bool:
        """Whether any state is endless, for the states reachable from the initial one (the
        only ones a lexeme is ever in)."""
        return self.initial in self

    def _successors(self, state: int) -> set[int]:
        row = self.transitions[state]
        return set(row[row >= 0].tolist())

    def _search(self, root: int) -> bool:
        known = self._known
        path, on_path = [root], {root}
        todo = [iter(self._successors(root))]
        while path:
            for nxt in todo[-1]:
                verdict = known.get(nxt)
                if verdict or nxt in on_path:  # a cycle is reachable from the whole path
                    known.update(dict.fromkeys(path, True))
                    return True
                if verdict is None:
                    path.append(nxt)
                    on_path.add(nxt)
                    todo.append(iter(self._successors(nxt)))
                    break
            else:  # every successor explored without reaching a cycle
                done = path.pop()
                on_path.discard(done)
                todo.pop()
                known[done] = False
        return False
