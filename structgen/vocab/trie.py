"""The vocabulary as a byte trie in flat, level-ordered numpy arrays.

Masks are computed by walking an automaton over this trie one depth level at a time with
vectorised gathers: a whole level costs a few numpy calls, and subtrees die together the moment
their shared prefix is rejected — no Python loop over tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Protocol, Sequence

import numpy as np

from . import native


class TransitionSource(Protocol):
    """What `TokenTrie.walk` needs from an automaton. A source whose transitions are all
    known may also have `table` (int32, the next state of (s, b) at s * 256 + b) and
    `absorbing` (a state every byte keeps, or -1): walks then run compiled (`native`)."""

    sink: int

    def step(self, states: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Next state of each (state, byte) pair; `sink` where the byte is not allowed."""
        ...


@dataclass(frozen=True, eq=False)
class TrieLevel:
    """All trie nodes at one depth d (prefixes of length d), in lexicographic order."""

    byte: np.ndarray  # int64 — the last byte of each node's prefix
    parent: np.ndarray  # int64 — index of the parent node at depth d-1 (0 = root at d=1)
    child_start: np.ndarray  # int64 — first child in level d+1
    child_count: np.ndarray  # int64
    token_start: np.ndarray  # int64 — first token ending here, index into `tokens`
    token_count: np.ndarray  # int64
    tokens: np.ndarray  # int64 — token ids ending at this level, grouped by node
    token_node: np.ndarray  # int64 — the node each of `tokens` ends at


def _group(nodes: list) -> tuple[tuple, np.ndarray]:
    """`walk_each`'s children group: the nodes, and their bytes."""
    return tuple(nodes), np.array([node[0] for node in nodes], np.int64)


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate arange(start, start+count) for each pair, vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64)
    before = np.cumsum(counts) - counts
    return np.repeat(starts - before, counts) + np.arange(total)


@dataclass(frozen=True, eq=False)
class BatchWalk:
    """Result of `TokenTrie.walk_many`: the tokens of start state i are ids[offsets[i]:offsets[i+1]]."""

    all_ids: np.ndarray  # int64 — grouped by start state (in the order given)
    offsets: np.ndarray  # int64, len(states) + 1
    all_end_states: np.ndarray | None  # int64, parallel to all_ids (only with `with_states`)
    dropped: np.ndarray  # bool, len(states) — left to `walk` (see `dense_fraction`)
    work: int  # (child, start state) pairs examined

    def ids(self, i: int) -> np.ndarray:
        return self.all_ids[self.offsets[i] : self.offsets[i + 1]]

    def end_states(self, i: int) -> np.ndarray:
        if self.all_end_states is None:
            raise ValueError("walk_many(..., with_states=True) was not requested")
        return self.all_end_states[self.offsets[i] : self.offsets[i + 1]]


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _build_levels(ids: list[int], words: list[bytes]) -> list[TrieLevel]:
    """The level arrays of sorted words, with whole-array steps per depth."""
    n = len(words)
    lengths = np.fromiter((len(w) for w in words), np.int64, n)
    max_len = int(lengths.max()) if n else 0
    mat = np.zeros((n, max_len), np.uint8)
    flat = np.frombuffer(b"".join(words), np.uint8)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    mat[rows, cols] = flat
    # lcp[i]: common prefix length of sorted word i with word i-1
    lcp = np.zeros(n, np.int64)
    if n > 1:
        diff = mat[1:] != mat[:-1]
        first = np.where(diff.any(axis=1), diff.argmax(axis=1), max_len)
        lcp[1:] = np.minimum(first, np.minimum(lengths[1:], lengths[:-1]))
    token_ids = np.asarray(ids, np.int64)

    levels: list[TrieLevel] = []
    prev_node_of = np.zeros(n, np.int64)  # node index of each word at depth d-1 (root: 0)
    prev_count = 1
    for d in range(1, max_len + 1):
        reach = lengths >= d
        creates = reach & (lcp < d)
        node_of = np.cumsum(creates) - 1  # valid where reach
        creators = np.flatnonzero(creates)
        if levels:  # children of depth d-1 nodes are contiguous at depth d
            child_count = np.bincount(prev_node_of[creators], minlength=prev_count)
            prev = levels[-1]
            object.__setattr__(prev, "child_count", child_count)
            object.__setattr__(prev, "child_start", np.cumsum(child_count) - child_count)
        ends = np.flatnonzero(lengths == d)  # sorted order => grouped by node
        end_nodes = node_of[ends]
        n_nodes = len(creators)
        token_count = np.bincount(end_nodes, minlength=n_nodes)
        levels.append(
            TrieLevel(
                byte=mat[creators, d - 1].astype(np.int64),
                parent=prev_node_of[creators],
                child_start=np.zeros(n_nodes, np.int64),
                child_count=np.zeros(n_nodes, np.int64),
                token_start=np.cumsum(token_count) - token_count,
                token_count=token_count,
                tokens=token_ids[ends],
                token_node=end_nodes,
            )
        )
        prev_node_of = np.where(reach, node_of, 0)
        prev_count = n_nodes
    return levels


def _tuples_of(ids: list[int], words: list[bytes], lo: int, hi: int, d: int) -> tuple:
    """`TokenTrie._as_tuples`' group of the sorted words[lo:hi], which share their first d
    bytes and are longer: their nodes at depth d + 1, grouped by that byte."""
    nodes = []
    i = lo
    while i < hi:
        b = words[i][d]
        j = k = i
        while j < hi and words[j][d] == b:
            j += 1
        while k < j and len(words[k]) == d + 1:  # the words ending here sort first
            k += 1
        nodes.append((b, tuple(ids[i:k]), _tuples_of(ids, words, k, j, d + 1) if k < j else None))
        i = j
    return _group(nodes)


class TokenTrie:
    """Byte trie of all content tokens (empty byte strings and excluded ids are left out)."""

    #: Up to this many tokens, the level arrays are built on first use (small tries, such as a
    #: grammar state's leaving tokens, are walked depth first over `_as_tuples`' form, built
    #: straight from the sorted words: ~1 ms of numpy calls per trie saved).
    LAZY_LEVELS = 256

    def __init__(self, token_bytes: Sequence[bytes], exclude: Iterable[int] = (),
                 only: Iterable[int] | None = None) -> None:
        """`only`: build the trie of just these ids (a sub-vocabulary; ids keep their values)."""
        excluded = set(exclude)
        candidates = range(len(token_bytes)) if only is None else only
        ids = [i for i in candidates if token_bytes[i] and i not in excluded]
        ids.sort(key=lambda i: token_bytes[i])
        words = [token_bytes[i] for i in ids]
        self.n_tokens = len(words)
        self.max_len = max(map(len, words), default=0)
        self._nodes: tuple | None = None  # `walk_each`'s nested form, built on first use
        self._preorder: native.Preorder | None = None  # the compiled walk's, likewise
        self._levels: list[TrieLevel] | None = None
        self._sorted: tuple[list[int], list[bytes]] | None = (ids, words)
        if self.n_tokens > self.LAZY_LEVELS:
            self.n_nodes = sum(len(level.byte) for level in self.levels)
        else:  # distinct non-empty prefixes: each word adds those past its common prefix
            self.n_nodes = sum(len(w) - _common_prefix(v, w)
                               for v, w in zip([b""] + words, words))

    @property
    def levels(self) -> list[TrieLevel]:
        """The trie level by level (built on first use for small tries)."""
        if self._levels is None:
            assert self._sorted is not None
            self._levels = _build_levels(*self._sorted)
            self._sorted = None  # (the words are not needed past this)
        return self._levels

    def walk(self, source: "TransitionSource", state: int,
             first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All tokens whose bytes an automaton can read from `state` without dying (only those
        whose first byte b has `first[b]`, when that 256-entry bool array is given).

        `source.step(states, bytes)` gives the next state of each (state, byte) pair (automata
        built lazily add rows on demand); the state `source.sink` stands for "dead" and maps to
        itself. Returns the token ids (unsorted)
        and the state each one ends in.

        Levels where few nodes are alive are walked sparsely (only the children of live nodes);
        levels where most are alive densely (every node, dead ones propagating the sink), which
        avoids index bookkeeping when a state allows most of the vocabulary.

        Sources with a full `table` are walked by the compiled walk when it is available (the
        same tokens and states, in trie order).
        """
        sink = source.sink
        table = getattr(source, "table", None)
        if table is not None and native.available():
            return self.preorder().walk(table, sink, getattr(source, "absorbing", -1),
                                        int(state), first)
        out_ids: list[np.ndarray] = []
        out_states: list[np.ndarray] = []
        # Sparse representation: live node indices + their states. Dense: states of all nodes.
        live_nodes = np.zeros(1, np.int64)
        live_states = np.array([state], np.int64)
        dense: np.ndarray | None = None
        prev_nodes = 1
        for d, level in enumerate(self.levels):
            parent_level = self.levels[d - 1] if d else None
            if dense is None and 4 * len(live_nodes) > prev_nodes:
                dense = np.full(prev_nodes, sink, np.int64)
                dense[live_nodes] = live_states
            if dense is not None:
                parent_states = dense[level.parent]  # only nodes with children need rows
                if d == 0 and first is not None:
                    parent_states = np.where(first[level.byte], parent_states, sink)
                states = source.step(parent_states, level.byte)
                ends = states[level.token_node]
                ok = ends != sink
                out_ids.append(level.tokens[ok])
                out_states.append(ends[ok])
                live_count = len(states) - int(np.count_nonzero(states == sink))
                if live_count == 0:
                    break
                if 16 * live_count < len(states):
                    live_nodes = np.flatnonzero(states != sink)
                    live_states = states[live_nodes]
                    dense = None
                else:
                    dense = states
            else:
                if parent_level is None:  # the root's children: all of depth 1
                    starts, counts = np.zeros(1, np.int64), np.array([len(level.byte)])
                else:
                    starts = parent_level.child_start[live_nodes]
                    counts = parent_level.child_count[live_nodes]
                children = expand_ranges(starts, counts)
                if len(children) == 0:
                    break
                parent_states = np.repeat(live_states, counts)
                nxt = source.step(parent_states, level.byte[children])
                alive = nxt != sink
                live_nodes = children[alive]
                live_states = nxt[alive]
                tc = level.token_count[live_nodes]
                has = tc > 0
                if has.any():
                    tok = expand_ranges(level.token_start[live_nodes[has]], tc[has])
                    out_ids.append(level.tokens[tok])
                    out_states.append(np.repeat(live_states[has], tc[has]))
            prev_nodes = len(level.byte)
        if not out_ids:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(out_ids), np.concatenate(out_states)

    def relabelled(self, new_ids: Callable[[np.ndarray], np.ndarray]) -> "TokenTrie":
        """The same trie with each token id replaced by `new_ids(ids)` (walks then return
        those labels), sharing every other array."""
        trie = object.__new__(TokenTrie)
        trie.__dict__.update(self.__dict__)
        trie._levels = [replace(level, tokens=new_ids(level.tokens)) for level in self.levels]
        trie._nodes, trie._sorted = None, None
        if self._preorder is not None:  # the same nodes: only the labels change
            trie._preorder = replace(self._preorder, tokens=new_ids(self._preorder.tokens))
        return trie

    def preorder(self) -> native.Preorder:
        """The trie in preorder (built on first use, from the level arrays): a node's subtree
        is the nodes up to its `end`, and its tokens a range of the preorder tokens."""
        if self._preorder is None:
            self._preorder = self._build_preorder()
        return self._preorder

    def _build_preorder(self) -> native.Preorder:
        levels = self.levels
        sizes: list[np.ndarray] = [np.empty(0, np.int64)] * len(levels)  # subtree node counts
        for d in range(len(levels) - 1, -1, -1):
            level, size = levels[d], np.ones(len(levels[d].byte), np.int64)
            if d + 1 < len(levels):
                below = np.zeros(len(sizes[d + 1]) + 1, np.int64)
                np.cumsum(sizes[d + 1], out=below[1:])
                size += below[level.child_start + level.child_count] - below[level.child_start]
            sizes[d] = size
        pre: list[np.ndarray] = []  # preorder index of each node, per level
        for d, level in enumerate(levels):
            before = np.cumsum(sizes[d]) - sizes[d]  # nodes of earlier subtrees in the level
            if d == 0:
                pre.append(before)
            else:
                first_sibling = levels[d - 1].child_start[level.parent]
                pre.append(pre[d - 1][level.parent] + 1 + before - before[first_sibling])
        n = self.n_nodes
        byte, depth = np.zeros(n, np.uint8), np.zeros(n, np.int32)
        end, count = np.zeros(n, np.int32), np.zeros(n, np.int64)
        for d, level in enumerate(levels):
            byte[pre[d]], depth[pre[d]] = level.byte, d
            end[pre[d]], count[pre[d]] = pre[d] + sizes[d], level.token_count
        tok_start = np.zeros(n + 1, np.int32)
        np.cumsum(count, out=tok_start[1:])
        tokens = np.zeros(int(tok_start[-1]), np.int64)
        for d, level in enumerate(levels):
            rank = np.arange(len(level.tokens)) - level.token_start[level.token_node]
            tokens[tok_start[pre[d][level.token_node]] + rank] = level.tokens
        return native.Preorder(byte, depth, end, tok_start, tokens, len(levels))

    def walk_each(self, next_state: Callable[[int, int, np.ndarray], int], state: int,
                  sink: int) -> list[int]:
        """`walk`'s token ids, depth first with one `next_state(state, byte, siblings)` call per
        node reached: for small tries, where `walk` pays a few numpy calls per level even when
        one node is alive (a leaving trie holding a 64-space token has 64 levels). `siblings`
        holds the bytes of the node and its siblings (an int64 array), which an automaton that
        builds transitions on demand can build together, on the first of them."""
        nodes = self._nodes
        if nodes is None:
            nodes = self._nodes = self._as_tuples()
        out: list[int] = []
        todo = [(state, nodes)]
        while todo:
            s, (below, siblings) = todo.pop()
            for b, ids, kids in below:
                s2 = next_state(s, b, siblings)
                if s2 != sink:
                    out.extend(ids)
                    if kids is not None:
                        todo.append((s2, kids))
        return out

    def _as_tuples(self) -> tuple:
        """The root's children as a group: (nodes, their bytes as an int64 array), each node a
        (byte, token ids ending there, its children's group or None) tuple."""
        if self._levels is None and self._sorted is not None:
            ids, words = self._sorted
            return _tuples_of(ids, words, 0, len(words), 0)
        below: list = []
        for level in reversed(self.levels):
            byte, tokens = level.byte.tolist(), level.tokens.tolist()
            ts, tc = level.token_start.tolist(), level.token_count.tolist()
            cs, cc = level.child_start.tolist(), level.child_count.tolist()
            below = [(byte[i], tuple(tokens[ts[i]:ts[i] + tc[i]]),
                      _group(below[cs[i]:cs[i] + cc[i]]) if cc[i] else None)
                     for i in range(len(byte))]
        return _group(below)

    def walk_many(
        self,
        source: "TransitionSource",
        states: Sequence[int] | np.ndarray,
        dense_fraction: float | None = None,
        with_states: bool = False,
    ) -> "BatchWalk":
        """`walk` from many start states at once, in one multi-source pass over the trie.

        The live (node, state) pairs of every start state advance together, level by level, so
        numpy's per-call overhead is paid once per level rather than once per level per start
        state — the win for automata whose states each allow few tokens. The work itself (a
        gather per live pair and child) is not shared, and per pair it costs more than `walk`'s
        dense mode, so start states that keep most of the trie alive are better walked alone:
        with `dense_fraction`, a start state with more than that fraction of a level's nodes
        alive is dropped from the batch (`BatchWalk.dropped[i]`, its ids left empty).

        Pairs stay grouped by start state (children are expanded in parent order), and the
        emitted tokens are regrouped per start state at the end: `ids(i)` equals
        `walk(source, states[i])[0]` as a set (and `end_states(i)` the matching end states,
        when `with_states`) for every start state not dropped.
        """
        sink = source.sink
        starts0 = np.asarray(states, np.int64).reshape(-1)
        k = len(starts0)
        src_dtype = np.int16 if k < 2**15 else np.int64  # int16 => stable argsort is a radix sort
        live_src = np.flatnonzero(starts0 != sink).astype(src_dtype)
        live_states = starts0[live_src]
        live_nodes = np.zeros(len(live_src), np.int64)
        dropped = np.zeros(k, bool)
        out_ids: list[np.ndarray] = []
        out_src: list[np.ndarray] = []
        out_states: list[np.ndarray] = []
        work = 0
        for d, level in enumerate(self.levels):
            if len(live_src) == 0:
                break
            if d == 0:  # the root's children: all of depth 1, for every start state
                counts = np.full(len(live_src), len(level.byte), np.int64)
                starts = np.zeros(len(live_src), np.int64)
            else:
                parent_level = self.levels[d - 1]
                starts = parent_level.child_start[live_nodes]
                counts = parent_level.child_count[live_nodes]
            children = expand_ranges(starts, counts)
            if len(children) == 0:
                break
            work += len(children)
            nxt = source.step(np.repeat(live_states, counts), level.byte[children])
            alive = np.flatnonzero(nxt != sink)
            live_nodes = children[alive]
            live_states = nxt[alive]
            live_src = np.repeat(live_src, counts)[alive]
            if dense_fraction is not None and len(live_src):
                per_src = np.bincount(live_src, minlength=k)
                crowded = per_src > dense_fraction * len(level.byte)
                if crowded.any():
                    dropped |= crowded
                    keep = np.flatnonzero(~crowded[live_src])
                    live_nodes, live_states, live_src = live_nodes[keep], live_states[keep], live_src[keep]
            tc = level.token_count[live_nodes]
            has = np.flatnonzero(tc)
            if len(has):
                tch = tc[has]
                out_ids.append(level.tokens[expand_ranges(level.token_start[live_nodes[has]], tch)])
                out_src.append(np.repeat(live_src[has], tch))
                if with_states:
                    out_states.append(np.repeat(live_states[has], tch))
        ids = np.empty(0, np.int64)
        ends = np.empty(0, np.int64) if with_states else None
        offsets = np.zeros(k + 1, np.int64)
        if out_ids:
            src = np.concatenate(out_src)
            ids = np.concatenate(out_ids)
            if with_states:
                ends = np.concatenate(out_states)
            if dropped.any():  # tokens emitted before a start state was dropped
                keep = np.flatnonzero(~dropped[src])
                src, ids = src[keep], ids[keep]
                ends = ends[keep] if with_states else None
            order = np.argsort(src, kind="stable")
            ids = ids[order]
            ends = ends[order] if with_states else None
            np.cumsum(np.bincount(src, minlength=k), out=offsets[1:])
        return BatchWalk(ids, offsets, ends, dropped, work)

    def below(self, byte: int) -> "TokenTrie":
        """The trie of the tokens that start with `byte` and go on past it, keyed by their
        bytes after it (ids unchanged). Sliced out of this trie's arrays, no sorting: the
        descendants of one node are a contiguous range at every level."""
        sub = object.__new__(TokenTrie)
        sub._levels = []
        first = self.levels[0] if self.levels else None
        j = int(np.searchsorted(first.byte, byte)) if first is not None else 0
        sub._nodes, sub._preorder, sub._sorted = None, None, None
        if first is None or j >= len(first.byte) or first.byte[j] != byte:
            sub.max_len, sub.n_tokens, sub.n_nodes = 0, 0, 0
            return sub
        lo, hi = int(first.child_start[j]), int(first.child_start[j] + first.child_count[j])
        parent_lo = j
        for level in self.levels[1:]:
            if lo >= hi:
                break
            t_lo = int(level.token_start[lo])
            t_hi = int(level.token_start[hi - 1] + level.token_count[hi - 1])
            c_lo = int(level.child_start[lo])
            c_hi = int(level.child_start[hi - 1] + level.child_count[hi - 1])
            # the first level's parent is the new root (index 0)
            parent = level.parent[lo:hi] - parent_lo if sub.levels else np.zeros(hi - lo, np.int64)
            sub.levels.append(TrieLevel(
                byte=level.byte[lo:hi],
                parent=parent,
                child_start=level.child_start[lo:hi] - c_lo,
                child_count=level.child_count[lo:hi],
                token_start=level.token_start[lo:hi] - t_lo,
                token_count=level.token_count[lo:hi],
                tokens=level.tokens[t_lo:t_hi],
                token_node=level.token_node[t_lo:t_hi] - lo,
            ))
            parent_lo, lo, hi = lo, c_lo, c_hi
        sub.max_len = len(sub.levels)
        sub.n_tokens = sum(len(level.tokens) for level in sub.levels)
        sub.n_nodes = sum(len(level.byte) for level in sub.levels)
        return sub

    def has_extension(self, prefix: bytes) -> bool:
        """Whether some token's bytes strictly extend `prefix` (used to back off forced text)."""
        if not prefix or len(prefix) >= self.max_len:
            return False
        lo, hi = 0, len(self.levels[0].byte)
        for d, b in enumerate(prefix):
            level = self.levels[d]
            seg = level.byte[lo:hi]
            k = int(np.searchsorted(seg, b))
            if k >= len(seg) or seg[k] != b:
                return False
            node = lo + k
            lo = int(level.child_start[node])
            hi = lo + int(level.child_count[node])
        return hi > lo


_TRIES: dict[str, TokenTrie] = {}


def trie_for(vocab: "Vocabulary") -> TokenTrie:  # noqa: F821 — avoid an import cycle
    """The (cached) trie of a vocabulary's content tokens; specials never enter it."""
    trie = _TRIES.get(vocab.fingerprint)
    if trie is None:
        trie = _TRIES[vocab.fingerprint] = TokenTrie(vocab.token_bytes, vocab.special_ids)
    return trie
