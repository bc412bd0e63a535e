"""maxLength on plain strings: a code-point counter composed with the JSON automaton.

An exact DFA for "at most N code points" needs a state per code point counted: beyond
`MAX_STRING_STATES` from N ≈ 8,000 (real schemas write maxLength 10000 or 65535 for free
text), 20k states for the common 1024, and every count read is a grammar state whose first
mask walks the vocabulary. For a plain string (no pattern, format or enum) with N ≥
`CAP_FROM` the compiler emits the string without the bound, under a terminal named `CAPPED` +
N (unless the parser could read that string two ways: then the exact DFA), and
`LengthCapAutomaton` counts the code points of such a string as the output goes (the
grammar's lexemes after an opening quote say whether it opened one): a byte that would start
code point N + 1 is refused. That is exact and never strands the output: the string can always
be closed (any minLength ≤ N is met with the code points still allowed), so the only byte
refused is one a valid text cannot have.

Code points are counted as JSON Schema counts them: a UTF-8 character or an escape is one, a
surrogate pair of escapes (`\\ud83d\\ude00`) one in all.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..vocab.token_bytes import Vocabulary
from .base import State
from .beside import BesideAutomaton, FlatVocab

# Counter state: None outside capped strings; inside one, (cap, code points so far, the bytes
# of an escape in progress (b"" when none), whether the last escape was a high surrogate).
Count = tuple[int, int, bytes, bool] | None

_QUOTE, _BACKSLASH, _U = 0x22, 0x5C, 0x75
_NO_IDS = np.empty(0, np.int64)


def _inside(data: bytes, i: int, count: int, esc: bytes, high: bool, cap: int
            ) -> tuple[int, int, bytes, bool] | None:
    """Read string content from `data[i]` on: (where it stops — its closing quote, or the
    end — and the count, escape in progress and surrogate flag there), or None once the
    count passes `cap`."""
    n = len(data)
    while i < n:
        b = data[i]
        if esc:
            esc += bytes((b,))
            if len(esc) == 2 and b != _U or len(esc) == 6:
                # the escape is done; a high surrogate is paired with the escape after it
                high = len(esc) == 6 and 0xD800 <= int(esc[2:], 16) <= 0xDBFF
                esc = b""
            i += 1
            continue
        if b == _QUOTE:
            break
        i += 1
        if b == _BACKSLASH:
            esc = b"\\"
            if high:  # the low half of a pair: no new code point
                continue
        high = False
        if b < 0x80 or b >= 0xC0:  # a code point starts (not a UTF-8 continuation byte)
            count += 1
            if count > cap:
                return None
    return i, count, esc, high


def feed(c: Count, data: bytes, opened: Callable[[int], int | None]) -> Count | bool:
    """Counter state after `data` (a valid continuation of the JSON text), or False when it
    would hold more code points than the cap of the string it is in. `opened(i)`: the cap of
    the string whose opening quote is `data[i]`, None when it is not a capped one."""
    i, n = 0, len(data)
    while True:
        if c is None:
            q = data.find(b'"', i)
            if q < 0:
                return None
            got = opened(q)
            i = q + 1
            if got is None:
                continue
            c = (got, 0, b"", False)
        read = _inside(data, i, c[1], c[2], c[3], c[0])
        if read is None:
            return False
        i, count, esc, high = read
        if i == n:
            return (c[0], count, esc, high)
        c, i = None, i + 1  # past the closing quote


class _VocabCounts:
    """Per vocabulary: the code points each token adds inside a string, read from the start
    of a code point (no escape in progress) up to its first unescaped quote; the bytes after
    its first quote, -1 without one (a string the token opens gets at most that many code
    points); and the content ids by length, longest first."""

    def __init__(self, vocab: Vocabulary) -> None:
        flat = FlatVocab(vocab)
        b, token = flat.bytes, flat.token
        first_quote = flat.first(b == _QUOTE)
        head = flat.pos < first_quote[token]  # bytes before the first quote
        starts = head & ((b < 0x80) | (b >= 0xC0))
        counts = np.bincount(token[starts], minlength=flat.n)
        # (escapes count once and may hide a quote: read those few tokens one by one)
        huge = np.iinfo(np.int64).max
        for i in flat.having(b == _BACKSLASH).tolist():
            read = _inside(vocab.token_bytes[i], 0, 0, b"", False, huge)
            assert read is not None
            counts[i] = read[1]
        self.counts = np.where(flat.content, counts, 0)
        lengths = np.bincount(token, minlength=flat.n)
        self.after_quote = np.where(first_quote < lengths, lengths - first_quote - 1, -1)
        ids = np.flatnonzero(flat.content)
        order = np.argsort(-lengths[ids], kind="stable")
        self._by_length = ids[order]
        self._neg_lengths = -lengths[ids][order]  # ascending
        self._openers: dict[int, np.ndarray] = {}

    def openers(self, least: int) -> np.ndarray:
        """The only ids that may open a capped string and pass its cap, the least being `least`:
        a quote and then more bytes (few; cached per cap: one scan of the vocabulary)."""
        out = self._openers.get(least)
        if out is None:
            out = self._openers[least] = np.flatnonzero(self.after_quote > least)
        return out

    def longer_than(self, r: int) -> np.ndarray:
        """Content ids with more than r bytes (an upper bound of the code points they add)."""
        return self._by_length[: int(np.searchsorted(self._neg_lengths, -r, side="left"))]


_TABLES: dict[str, _VocabCounts] = {}


class LengthCapAutomaton(BesideAutomaton):
    """A JSON automaton whose capped strings hold at most their cap of code points. States are
    (inner state, counter state)."""

    def __init__(self, inner: Any, caps: dict[int, int]) -> None:
        """`inner`: the JSON automaton; `caps`: the cap of each capped string terminal."""
        super().__init__(inner)
        self._caps = caps
        tables = _TABLES.get(inner.vocab.fingerprint)
        if tables is None:
            tables = _TABLES[inner.vocab.fingerprint] = _VocabCounts(inner.vocab)
        self._tables = tables
        self._openers = tables.openers(min(caps.values()))

    def _opened(self, inner_state: State, data: bytes) -> Callable[[int], int | None]:
        """`feed`'s `opened` for `data` read from `inner_state`."""
        after = self._lexemes_after(inner_state, data)

        def opened(i: int) -> int | None:
            lexemes = after(i)
            caps = {self._caps[t] for t, _, _ in lexemes if t in self._caps}
            if caps and (len(caps) > 1 or any(t not in self._caps for t, _, _ in lexemes)):
                # the compiler refuses schemas where this could happen
                raise RuntimeError("a string read both as capped and otherwise")
            return caps.pop() if caps else None
        return opened

    def _feed(self, inner_state: State, track: Count, data: bytes) -> Count | bool:
        return feed(track, data, self._opened(inner_state, data))

    def _refused(self, state: State, base: np.ndarray) -> np.ndarray:
        """Tokens of the inner mask `base` that would pass a cap: in the string being read,
        those adding more code points than it has left (by the table, from a clean start;
        mid-escape or after a high surrogate, a rare state, each token longer than what is
        left goes through `feed`), and the few that may open a capped string and fill it (by
        `feed`). Nothing is refused until a string is within a token's length of its cap."""
        inner_state, c = state
        t = self._tables
        check = self._openers[base[self._openers]]
        over = _NO_IDS
        if c is not None:
            cap, count, esc, high = c
            longer = t.longer_than(cap - count)
            longer = longer[base[longer]]
            if esc or high:  # the table reads from the start of a code point
                check = np.union1d(check, longer)
            else:
                over = longer[t.counts[longer] > cap - count]
        words = self.vocab.token_bytes
        bad = [i for i in check.tolist() if self._feed(inner_state, c, words[i]) is False]
        return np.concatenate([over, np.array(bad, np.int64)]) if bad else over

    def completion_bytes(self, state: State) -> bytes | None:
        # The inner completion closes every string as soon as its minLength allows, never
        # past a cap (minLength ≤ cap, and the bytes read so far were within it).
        return self.inner.completion_bytes(state[0])
