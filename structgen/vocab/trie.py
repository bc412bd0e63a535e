"""The vocabulary as a byte trie in flat, level-ordered numpy arrays.

Masks are computed by walking an automaton over this trie one depth level at a time with
vectorised gathers: a whole level costs a few numpy calls, and subtrees die together the moment
their shared prefix is rejected — no Python loop over tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True, eq=False)
class TrieLevel:
    """All trie nodes at one depth d (prefixes of length d), in lexicographic order."""

    byte: np.ndarray  # uint8 — the last byte of each node's prefix
    child_start: np.ndarray  # int64 — first child in level d+1
    child_count: np.ndarray  # int64
    token_start: np.ndarray  # int64 — first token ending here, index into `tokens`
    token_count: np.ndarray  # int64
    tokens: np.ndarray  # int64 — token ids ending at this level, grouped by node


def expand_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenate arange(start, start+count) for each pair, vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, np.int64)
    before = np.cumsum(counts) - counts
    return np.repeat(starts - before, counts) + np.arange(total)


class TokenTrie:
    """Byte trie of all content tokens (empty byte strings and excluded ids are left out)."""

    def __init__(self, token_bytes: Sequence[bytes], exclude: Iterable[int] = ()) -> None:
        excluded = set(exclude)
        ids = [i for i, b in enumerate(token_bytes) if b and i not in excluded]
        ids.sort(key=lambda i: token_bytes[i])
        words = [token_bytes[i] for i in ids]
        n = len(words)
        lengths = np.fromiter((len(w) for w in words), np.int64, n)
        self.max_len = int(lengths.max()) if n else 0
        mat = np.zeros((n, self.max_len), np.uint8)
        flat = np.frombuffer(b"".join(words), np.uint8)
        rows = np.repeat(np.arange(n), lengths)
        cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        mat[rows, cols] = flat
        # lcp[i]: common prefix length of sorted word i with word i-1
        lcp = np.zeros(n, np.int64)
        if n > 1:
            diff = mat[1:] != mat[:-1]
            first = np.where(diff.any(axis=1), diff.argmax(axis=1), self.max_len)
            lcp[1:] = np.minimum(first, np.minimum(lengths[1:], lengths[:-1]))
        token_ids = np.asarray(ids, np.int64)

        self.levels: list[TrieLevel] = []
        prev_node_of = np.zeros(n, np.int64)  # node index of each word at depth d-1 (root: 0)
        prev_count = 1
        for d in range(1, self.max_len + 1):
            reach = lengths >= d
            creates = reach & (lcp < d)
            node_of = np.cumsum(creates) - 1  # valid where reach
            creators = np.flatnonzero(creates)
            if self.levels:  # children of depth d-1 nodes are contiguous at depth d
                child_count = np.bincount(prev_node_of[creators], minlength=prev_count)
                prev = self.levels[-1]
                object.__setattr__(prev, "child_count", child_count)
                object.__setattr__(prev, "child_start", np.cumsum(child_count) - child_count)
            ends = np.flatnonzero(lengths == d)  # sorted order ⇒ grouped by node
            end_nodes = node_of[ends]
            n_nodes = len(creators)
            token_count = np.bincount(end_nodes, minlength=n_nodes)
            self.levels.append(
                TrieLevel(
                    byte=mat[creators, d - 1].copy(),
                    child_start=np.zeros(n_nodes, np.int64),
                    child_count=np.zeros(n_nodes, np.int64),
                    token_start=np.cumsum(token_count) - token_count,
                    token_count=token_count,
                    tokens=token_ids[ends],
                )
            )
            prev_node_of = np.where(reach, node_of, 0)
            prev_count = n_nodes
        self.n_tokens = n
        self.n_nodes = sum(len(level.byte) for level in self.levels)

    def walk(self, transitions: np.ndarray, state: int) -> tuple[np.ndarray, np.ndarray]:
        """All tokens whose bytes an automaton can read from `state` without dying.

        `transitions` is an (n_states, 256) int table with negative = dead. Returns the token
        ids (unsorted) and the state each one ends in.
        """
        flat = transitions.reshape(-1)
        states = np.array([state], np.int64)
        starts = np.zeros(1, np.int64)  # the root's children: all of depth 1
        counts = np.array([len(self.levels[0].byte) if self.levels else 0], np.int64)
        out_ids: list[np.ndarray] = []
        out_states: list[np.ndarray] = []
        for level in self.levels:
            children = expand_ranges(starts, counts)
            if len(children) == 0:
                break
            parent_states = np.repeat(states, counts)
            nxt = flat[parent_states * 256 + level.byte[children]]
            live = nxt >= 0
            node_idx = children[live]
            states = nxt[live]
            tc = level.token_count[node_idx]
            has = tc > 0
            if has.any():
                tok = expand_ranges(level.token_start[node_idx[has]], tc[has])
                out_ids.append(level.tokens[tok])
                out_states.append(np.repeat(states[has], tc[has]))
            starts, counts = level.child_start[node_idx], level.child_count[node_idx]
        if not out_ids:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        return np.concatenate(out_ids), np.concatenate(out_states)

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
