"""uniqueItems over open item values: a lexical tracker composed with the JSON automaton.

A grammar can keep items distinct only by enumerating the sets of values used, which
`structgen.schema.compile` does for small finite domains. For strings, numbers or any JSON value
the text itself says enough: the schema compiler opens such arrays with their own terminal
(`UNIQUE_OPEN`, read as "["), and `UniqueItemsAutomaton` follows the output next to the
grammar, keeping the values of the finished items of the array it is in. A token that finishes
an item equal to an earlier one is refused — equal as JSON Schema says: `1` and `1.0`,
`"a"` and `"\\u0061"`, objects in any key order.

Refusing only there is exact because the compiler tracks only arrays of *open* items
(`Normaliser.open_values`): a value is fixed only at its first byte (null, true, false), its
closing quote or bracket, the byte after a number, or a canonical integer's `0` (where no
number lexeme can go on), and before that the text can still become infinitely many values. So
a state the grammar allows is never stranded by the tracker: the item in progress, and any
further item, can always take a value not used yet. Leading positions with few finite values
(boolean `prefixItems`) are the grammar's to keep apart, as in finite arrays.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Callable, Hashable

import numpy as np

from ..vocab.token_bytes import Vocabulary
from .base import State
from .beside import BesideAutomaton, FlatVocab

# Tracker state: None outside tracked arrays; inside one, (values, item, depth, mode): the
# equality keys of its finished items; the bytes of the item in progress (b"" before its first
# byte, None once its value is fixed, until the comma or bracket after it); brackets open
# inside the item; and whether the scan is in a string (STR) or just after its backslash (ESC).
Unique = tuple[frozenset, bytes | None, int, int] | None
OUT, STR, ESC = range(3)

_QUOTE, _BACKSLASH, _COMMA, _CLOSE = 0x22, 0x5C, 0x2C, 0x5D
_STRING_SPECIAL = re.compile(rb'["\\]')
_WHITESPACE = frozenset(b" \t\n\r")
_NUMBER_START = frozenset(b"-0123456789")
_NUMBER = frozenset(b"-+.eE0123456789")
_OPENERS = frozenset(b"{[")
_CLOSERS = frozenset(b"}]")
_LITERALS: dict[int, Hashable] = {ord("t"): ("b", True), ord("f"): ("b", False),
                                  ord("n"): ("z",)}
# what may follow a string item's closing quote in a token that finishes no further item
_ONE_ITEM_REST = re.compile(rb'\s*(,\s*("[^"\\]*)?|\][^\[]*)?')


def value_key(text: bytes) -> Hashable:
    """A key equal for JSON texts of equal values as JSON Schema compares them: numbers by
    value (`1`, `1.0`, `1e0`), strings by their code points, arrays in order, objects as sets
    of entries; booleans are not numbers."""
    if text[:1] == b'"' and b"\\" not in text:  # most items: a string without escapes
        return ("s", text[1:-1].decode("utf-8"))
    return _canonical(_DECODER.decode(text.decode("utf-8")))


_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal)


def _canonical(v: Any) -> Hashable:
    if isinstance(v, dict):
        return ("o", frozenset((k, _canonical(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("a", tuple(_canonical(x) for x in v))
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, bool):
        return ("b", v)
    if v is None:
        return ("z",)
    return ("n", v)  # Decimal: equal numbers compare and hash equal


def feed(u: Unique, data: bytes, opens: Callable[[int], bool],
         ends: Callable[[int], bool] = lambda i: False) -> Unique | bool:
    """Tracker state after `data` (a valid continuation of the JSON text), or False when it
    finishes an item equal to an earlier one of its array. `opens(i)`: whether the "[" at
    `data[i]` opens a tracked array (the grammar knows; in strings it never does). `ends(i)`:
    whether a number item starting `0` or `-0` at `data[i]` cannot go on (an integer); else
    a number is finished by the byte after it."""
    i, n = 0, len(data)
    if u is not None:
        values, item, depth, mode = u
    while i < n:
        if u is None:
            i = data.find(b"[", i)
            if i < 0:
                return None
            if opens(i):
                u, values, item, depth, mode = True, frozenset(), b"", 0, OUT
            i += 1
            continue
        b = data[i]
        if mode != OUT:  # in a string: copy up to its next quote or backslash
            if mode == ESC:
                item += data[i : i + 1]
                mode, i = STR, i + 1
                continue
            m = _STRING_SPECIAL.search(data, i)
            if m is None:
                item += data[i:]
                break
            j = m.start()
            item += data[i : j + 1]
            i = j + 1
            if data[j] == _BACKSLASH:
                mode = ESC
                continue
            mode = OUT
            if depth:
                continue
            key = value_key(item)  # a string item ends
        elif depth:
            item += data[i : i + 1]
            i += 1
            if b == _QUOTE:
                mode = STR
                continue
            if b in _OPENERS:
                depth += 1
                continue
            if b not in _CLOSERS:
                continue
            depth -= 1
            if depth:
                continue
            key = value_key(item)  # a container item ends
        else:
            i += 1
            if item:  # a number in progress
                if b in _NUMBER:
                    item += bytes((b,))
                    if item != b"-0" or not ends(i - 1):
                        continue
                key = value_key(item)
                if key in values:
                    return False
                values, item = values | {key}, None
            if b in _WHITESPACE:
                continue
            if b == _COMMA:
                item = b""
                continue
            if b == _CLOSE:
                u = None
                continue
            if item is None:  # the rest of a literal
                continue
            if b == _QUOTE:
                item, mode = b'"', STR
                continue
            if b in _OPENERS:
                item, depth = bytes((b,)), 1
                continue
            if b in _NUMBER_START:
                item = bytes((b,))
                if b != 0x30 or not ends(i - 1):
                    continue
                key = value_key(item)
            else:
                key = _LITERALS[b]
        if key in values:
            return False
        values, item = values | {key}, None
    if u is None:
        return None
    return (values, item, depth, mode)


class _VocabBytes:
    """Per vocabulary: which tokens can finish an item, by what the tracker state needs."""

    def __init__(self, vocab: Vocabulary) -> None:
        flat = FlatVocab(vocab)
        b = flat.bytes
        self.content = flat.content
        self.quote = flat.having(b == _QUOTE)  # ids, sorted
        self.close = flat.having((b == _CLOSE) | (b == 0x7D))
        self.comma = flat.having(b == _COMMA)
        # at an item's start (or after a finished one): a second quote, a delimiter or bracket,
        # or a literal or number as the first byte that is not whitespace
        quotes = np.bincount(flat.token[b == _QUOTE], minlength=flat.n)
        lead = ~np.isin(b, list(_WHITESPACE))
        first_lead = lead & (flat.pos == flat.first(lead)[flat.token])
        scalar = first_lead & np.isin(b, list(b"tfn-0123456789"))
        self.item_start = np.union1d(
            np.flatnonzero(quotes >= 2),
            flat.having(scalar | (b == _COMMA) | (b == _CLOSE) | (b == 0x7D)))
        # a "[" with a comma after it
        opens = flat.first(b == 0x5B)
        self.enter_twice = flat.having((b == _COMMA) & (flat.pos > opens[flat.token]))
        # tokens that finish a string item at their first quote and no other item after it
        # (no backslash before it; after it at most a comma and the start of the next string,
        # or the array's end): the text before that quote, by id
        words = vocab.token_bytes
        self.heads: dict[int, bytes] = {}
        for i in self.quote.tolist():
            head, _, rest = words[i].partition(b'"')
            if b"\\" not in head and _ONE_ITEM_REST.fullmatch(rest):
                self.heads[i] = head


_TABLES: dict[str, _VocabBytes] = {}


class UniqueItemsAutomaton(BesideAutomaton):
    """A JSON automaton whose arrays opened by the tracked terminal hold no two equal items.
    States are (inner state, tracker state)."""

    def __init__(self, inner: Any, open_terminal: int, plain_open: int | None) -> None:
        """`inner`: the JSON automaton; `open_terminal`: the terminal opening tracked arrays;
        `plain_open`: the plain "["."""
        super().__init__(inner)
        self._kinds = (open_terminal, plain_open)
        tables = _TABLES.get(inner.vocab.fingerprint)
        if tables is None:
            tables = _TABLES[inner.vocab.fingerprint] = _VocabBytes(inner.vocab)
        self._tables = tables

    def _opens(self, inner_state: State, data: bytes) -> Callable[[int], bool]:
        """`feed`'s `opens` for `data` read from `inner_state`: the grammar's lexemes after
        the "[" tell the tracked opening from the plain one."""
        after = self._lexemes_after(inner_state, data)

        def opens(i: int) -> bool:
            kinds = {t for t, _, _ in after(i)} & set(self._kinds)
            if len(kinds) > 1:  # the compiler refuses schemas where this could happen
                raise RuntimeError("an array read both as tracked for uniqueItems and not")
            return self._kinds[0] in kinds
        return opens

    def _ends(self, inner_state: State, data: bytes) -> Callable[[int], bool]:
        """`feed`'s `ends` for `data` read from `inner_state`: no number lexeme the grammar
        still reads after `data[i]` can go on."""
        after = self._lexemes_after(inner_state, data)
        dfas = self.grammar.dfas

        def ends(i: int) -> bool:
            return not any(dfas[t].rows[s][b] >= 0 for t, s, _ in after(i) for b in _NUMBER)
        return ends

    def _feed(self, inner_state: State, track: Unique, data: bytes) -> Unique | bool:
        return feed(track, data, self._opens(inner_state, data), self._ends(inner_state, data))

    def _refused(self, state: State, base: np.ndarray) -> np.ndarray:
        """Tokens of the inner mask `base` that finish a duplicate item: tried one by one among
        those that could (a comma is needed for a second item, a closing bracket to finish a
        container item, a quote to finish a string item)."""
        inner_state, u = state
        t = self._tables
        bad: list[int] = []
        if u is None:
            could = t.enter_twice
        elif not u[0]:
            could = t.comma
        elif u[2]:
            could = t.close
        elif u[3] != OUT:
            could = t.quote
        elif not u[1]:  # at an item's start, or after a finished one
            could = t.item_start
        else:  # a number in progress: any byte after it finishes it
            could = None
        if could is None:
            ids = np.flatnonzero(base)
            ids = ids[t.content[ids]].tolist()
        else:
            ids = could[base[could]].tolist()
        if u is not None and u[0] and not u[2] and u[3] == STR:
            # in a string item: most tokens finish it at their first quote, and nothing after
            values, item = u[0], u[1]
            verdicts: dict[bytes, bool] = {}
            rest = []
            for i in ids:
                head = t.heads.get(i)
                if head is None:
                    rest.append(i)
                    continue
                refused = verdicts.get(head)
                if refused is None:
                    refused = verdicts[head] = value_key(item + head + b'"') in values
                if refused:
                    bad.append(i)
            ids = rest
        words = self.vocab.token_bytes
        bad += [i for i in ids if self._feed(inner_state, u, words[i]) is False]
        return np.array(bad, np.int64)

    #: Bytes tried, in order, to turn an item away from a duplicate the inner completion would
    #: finish: each keeps the item open and makes its value new sooner or later.
    _DIVERT = b"123456789abcdefghijklmnopqrstuvwxyz0" + bytes(range(256))

    def completion_bytes(self, state: State) -> bytes | None:
        """The inner completion where it finishes no duplicate item; where it would, the item
        is continued by one more byte instead and completed from there, until none repeats
        (each try makes the item longer: only finitely many values are used)."""
        out = bytearray()
        for _ in range(4096):
            rest = self.inner.completion_bytes(state[0])
            if rest is None:
                return None
            at = _first_duplicate(self, state, rest)
            if at is None:
                return bytes(out) + rest
            state = self._advance_bytes(state, rest[:at])
            assert state is not None, "inner completion left the tracked language"
            for b in self._DIVERT:
                if b == rest[at]:
                    continue
                nxt = self._advance_bytes(state, bytes((b,)))
                if nxt is not None:
                    break
            else:
                raise AssertionError("an open item with no byte to continue it")
            out += rest[:at] + bytes((b,))
            state = nxt
        return None


def _first_duplicate(automaton: UniqueItemsAutomaton, state: State, data: bytes) -> int | None:
    """Index of the byte of `data` that finishes a duplicate item, read from `state`."""
    inner_state, u = state
    opens = automaton._opens(inner_state, data)
    ends = automaton._ends(inner_state, data)
    for i in range(len(data)):
        nxt = feed(u, data[i : i + 1], lambda _j, i=i: opens(i), lambda _j, i=i: ends(i))
        if nxt is False:
            return i
        u = nxt
    return None
