"""Large maxLength on plain strings: a code-point counter composed with the JSON automaton.

An exact DFA for "at most N code points" needs a state per code point counted, beyond
`MAX_STRING_STATES` from N ≈ 8,000 — yet real schemas write maxLength 10000 or 65535 for free
text. For a plain string (no pattern, format or enum) the compiler then emits the string
without the bound, under a terminal named `CAPPED` + N, and `LengthCapAutomaton` counts the
code points of such a string as the output goes (the grammar's lexemes after an opening quote
say whether it opened one): a byte that would start code point N + 1 is refused. That is exact
and never strands the output: the string can always be closed (any minLength ≤ N is met
with the code points still allowed), so the only byte refused is one a valid text cannot have.

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


def feed(c: Count, data: bytes, opened: Callable[[int], int | None]) -> Count | bool:
    """Counter state after `data` (a valid continuation of the JSON text), or False when it
    would hold more code points than the cap of the string it is in. `opened(i)`: the cap of
    the string whose opening quote is `data[i]`, None when it is not a capped one."""
    i, n = 0, len(data)
    if c is not None:
        cap, count, esc, high = c
    while i < n:
        if c is None:
            i = data.find(b'"', i)
            if i < 0:
                return None
            got = opened(i)
            i += 1
            if got is not None:
                c, cap, count, esc, high = True, got, 0, b"", False
            continue
        b = data[i]
        i += 1
        if esc:
            esc += bytes((b,))
            if len(esc) == 2 and b != _U or len(esc) == 6:
                # the escape is done; a high surrogate is paired with the escape after it
                high = len(esc) == 6 and 0xD800 <= int(esc[2:], 16) <= 0xDBFF
                esc = b""
            continue
        if b == _QUOTE:
            c = None
            continue
        if b == _BACKSLASH:
            esc = b"\\"
            if high:  # the low half of a pair: no new code point
                continue
        high = False
        if b < 0x80 or b >= 0xC0:  # a code point starts (not a UTF-8 continuation byte)
            count += 1
            if count > cap:
                return False
    if c is None:
        return None
    return (cap, count, esc, high)


class _VocabCounts:
    """Per vocabulary: code points each token adds inside a string, read from the start of a
    code point, up to its first quote; -1 for tokens that need `feed` (an escape before it,
    or a UTF-8 continuation byte first)."""

    def __init__(self, vocab: Vocabulary) -> None:
        flat = FlatVocab(vocab)
        b, token = flat.bytes, flat.token
        head = flat.pos < flat.first(b == _QUOTE)[token]  # bytes before the first quote
        starts = head & ((b < 0x80) | (b >= 0xC0))
        counts = np.bincount(token[starts], minlength=flat.n)
        needs_feed = np.zeros(flat.n, bool)
        needs_feed[token[head & (b == _BACKSLASH)]] = True
        needs_feed[token[(flat.pos == 0) & (b >= 0x80) & (b < 0xC0)]] = True
        self.counts = np.where(needs_feed | ~flat.content, -1, counts)
        self.content = flat.content
        self.longest = flat.longest  # bytes: no token adds more code points


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
        """Tokens of the inner mask `base` that would pass the cap. None can unless the count
        is within a token's length of the cap (or a token could open and fill a string)."""
        inner_state, c = state
        t = self._tables
        # a token shorter than every cap cannot open a string and pass its cap
        short = t.longest <= min(self._caps.values())
        if c is None and short:
            return np.empty(0, np.int64)
        if c is not None and c[0] - c[1] >= t.longest:
            return np.empty(0, np.int64)
        ids = np.flatnonzero(base)
        ids = ids[t.content[ids]]
        over = np.empty(0, np.int64)
        if c is not None and short and not c[2] and not c[3]:
            # counted by the table, but for the tokens that need `feed`
            counts = t.counts[ids]
            over = ids[counts > c[0] - c[1]]
            ids = ids[counts < 0]
        words = self.vocab.token_bytes
        bad = [i for i in ids.tolist() if self._feed(inner_state, c, words[i]) is False]
        return np.concatenate([over, np.array(bad, np.int64)])

    def completion_bytes(self, state: State) -> bytes | None:
        # The inner completion closes every string as soon as its minLength allows, never
        # past a cap (minLength ≤ cap, and the bytes read so far were within it).
        return self.inner.completion_bytes(state[0])
