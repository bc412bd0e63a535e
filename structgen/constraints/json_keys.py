"""Duplicate JSON keys, refused outside the grammar: a lexical key tracker composed with it.

A context-free grammar cannot say "each key at most once" in polynomial size, but the text
can: in JSON a string directly after `{` or `,` inside an object is a key, so a scan of the
output so far knows every open object's keys without any schema. `KeyTrackingAutomaton` runs
that scan next to a `GrammarAutomaton` (state = (grammar state, tracker state)) and refuses a
token that completes a key already present in its object.

Refusing duplicates alone could strand the output: after `{"a":1,` when "a" is the only key
the grammar still allows, or inside `{"name":1,"na` when only "name" continues it. So a token
is also refused when it ends in a key position — after such a comma, or inside a key string
whose bytes so far could still spell a present key — from which every key the grammar allows
is present. That is decided exactly by a search over the grammar's bytes, pruned by a DFA of
the present keys' spellings: as soon as the bytes stop spelling any present key (or a key
closes that is not present) a non-duplicate continuation exists. Positions after a value need
no search: the schema compiler only emits objects where needing another entry implies that a
fresh key exists (a missing required key, or enough distinct optional/additional keys for
`minProperties`, see `structgen.schema.compile`).

Masks are the grammar's mask minus the refused tokens, which are found among few candidates:
tokens that can reach a key position or close a key from the current scanner mode, and inside
key strings only those that keep spelling a present key (found by a search along that DFA over
the sorted vocabulary). Candidates whose verdict cannot depend on the tracker state — they
close no key that could be present, leave no container, and end where a fresh key certainly
follows by the grammar alone — are dropped once per grammar state, so a new tracker state over
a known grammar state mostly costs a few lookups.
"""
from __future__ import annotations

import json
import re
import weakref
from bisect import bisect_left
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..automata.bytedfa import DEAD, ByteDFA, EndlessStates
from ..schema.lexemes import _node_entries
from ..vocab.token_bytes import Vocabulary
from .base import DONE, State, TokenAutomaton

# Scanner modes: outside strings (a string here is a value / a key), inside a value string
# (after a backslash), inside a key string (after a backslash).
VALUE, KEY, VSTR, VESC, KSTR, KESC = range(6)
# Tracker state: (stack, mode, raw bytes of the key string read so far). The stack is linked:
# () or (parent, frame), frame None for an array, the frozenset of decoded keys for an object.
Track = tuple[Any, int, bytes]
TRACK_START: Track = ((), VALUE, b"")

_STRING_SPECIAL = re.compile(rb'["\\]')
_STRUCTURAL = re.compile(rb'["{}\[\],:]')
_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_WHITESPACE = b" \t\n\r"
_HEAD_BYTES = frozenset(_WHITESPACE + b'"')


def _probe_rank(b: int) -> int:
    """Order of witness bytes: a closing quote first (the shortest key), escapes last."""
    return -1 if b == _QUOTE else 256 if b == _BACKSLASH else b


def _best_byte(bs: set[int] | frozenset[int]) -> int:
    """`min(bs, key=_probe_rank)` of a non-empty set, without a key call per byte."""
    if _QUOTE in bs:
        return _QUOTE
    b = min(bs)
    if b == _BACKSLASH and len(bs) > 1:
        return min(x for x in bs if x != _BACKSLASH)
    return b


_UNKNOWN = object()  # not in a memo whose values may be None
_NO_IDS = np.empty(0, np.int64)
_NO_IDS.flags.writeable = False


def decode_key(raw: bytes) -> str:
    """The value of a JSON string from the bytes between its quotes (valid JSON string content:
    without a backslash, its UTF-8 text)."""
    if b"\\" not in raw:
        return raw.decode("utf-8")
    return json.loads(b'"' + raw + b'"')


def feed(track: Track, data: bytes) -> Track | None:
    """Tracker state after `data` (a valid continuation of a JSON text), or None when `data`
    completes a key already present in its object."""
    stack, mode, partial = track
    i, n = 0, len(data)
    while i < n:
        if mode == VSTR:
            m = _STRING_SPECIAL.search(data, i)
            if m is None:
                return (stack, VSTR, b"")
            i = m.start()
            mode = VALUE if data[i] == _QUOTE else VESC
            i += 1
        elif mode == KSTR:
            m = _STRING_SPECIAL.search(data, i)
            if m is None:
                return (stack, KSTR, partial + data[i:])
            j = m.start()
            if data[j] == _QUOTE:
                key = decode_key(partial + data[i:j])
                parent, keys = stack
                if key in keys:
                    return None
                stack, mode, partial = (parent, keys | {key}), VALUE, b""
            else:
                partial += data[i : j + 1]
                mode = KESC
            i = j + 1
        elif mode == VESC:
            mode = VSTR
            i += 1
        elif mode == KESC:
            partial += data[i : i + 1]
            mode = KSTR
            i += 1
        else:
            m = _STRUCTURAL.search(data, i)
            if m is None:
                break
            i = m.start()
            b = data[i]
            if b == _QUOTE:
                mode = KSTR if mode == KEY else VSTR
            elif b == 0x7B:  # {
                stack, mode = (stack, frozenset()), KEY
            elif b == 0x5B:  # [
                stack, mode = (stack, None), VALUE
            elif b in (0x7D, 0x5D):  # } ]
                stack, mode = stack[0], VALUE
            elif b == _COMMA:
                mode = KEY if stack and stack[1] is not None else VALUE
            else:  # :
                mode = VALUE
            i += 1
    return (stack, mode, partial)


def _reaches_key(data: bytes, mode: int) -> bool:
    """Whether `data` read from `mode`, inside containers unknown to it, may close a key or end
    in a key position of an object that may already hold keys (a superset: what a mask must
    check exactly)."""
    pushed: list[list[bool]] = []  # containers opened by `data`: [is object, holds a key]
    for b in data:
        if mode in (VSTR, KSTR):
            if b == _QUOTE:
                if mode == KSTR:
                    if not pushed or pushed[-1][1]:
                        return True  # its object may hold keys already
                    pushed[-1][1] = True
                mode = VALUE
            elif b == _BACKSLASH:
                mode += 1
        elif mode in (VESC, KESC):
            mode -= 1
        elif b == _QUOTE:
            mode = KSTR if mode == KEY else VSTR
        elif b == 0x7B:
            pushed.append([True, False])
            mode = KEY
        elif b == 0x5B:
            pushed.append([False, False])
            mode = VALUE
        elif b in (0x7D, 0x5D):
            if pushed:
                pushed.pop()
            mode = VALUE
        elif b == _COMMA:
            mode = KEY if not pushed or pushed[-1][0] else VALUE
        elif b == 0x3A:
            mode = VALUE
    if mode in (KEY, KSTR, KESC):
        return not pushed or pushed[-1][1]
    return False


def _rest_reaches_key(data: bytes, mode: int) -> bool:
    """From a key position (KEY, KSTR or KESC): whether `data`, past the current key, may close
    a key or end in a key position of an object that may hold keys — after the current key
    string closes, or (from KEY) where it leaves the object instead of opening one (`},`). The
    current key itself is decided on the keys DFA (`_VocabTables.spelled_along`)."""
    i, n = 0, len(data)
    if mode == KEY:
        while i < n and data[i] in _WHITESPACE:
            i += 1
        if i == n:
            return False  # whitespace alone leaves the key position as it was
        if data[i] != _QUOTE:
            return _reaches_key(data[i:], KEY)
        i, mode = i + 1, KSTR
    while i < n:  # inside the current key string: find its closing quote
        if mode == KESC:
            mode = KSTR
        elif data[i] == _BACKSLASH:
            mode = KESC
        elif data[i] == _QUOTE:
            return _reaches_key(data[i + 1 :], VALUE)
        i += 1
    return False


class _VocabTables:
    """Per-vocabulary candidate sets (computed once per vocabulary, on first use)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.token_bytes = vocab.token_bytes
        content = [i for i, b in enumerate(vocab.token_bytes) if b and i not in vocab.special_ids]
        self._marked = [i for i in content if b'"' in vocab.token_bytes[i]
                        or b"," in vocab.token_bytes[i]]
        self._reaching: dict[int, np.ndarray] = {}
        self._local_ends: dict[tuple[int, bool, bool], dict[int, tuple[int, int] | None]] = {}
        # bytes -> id, and the few byte strings several ids share: no list per token (262k
        # lists cost Gemma-3 ~0.5 s, most of it the collector passes they set off)
        self._id_of: dict[bytes, int] = {}
        self._shared: dict[bytes, list[int]] = {}
        for i in content:
            b = vocab.token_bytes[i]
            if b in self._id_of:
                self._shared.setdefault(b, [self._id_of[b]]).append(i)
            else:
                self._id_of[b] = i
        self.sorted_tokens = sorted(self._id_of)
        # whitespace then an opening quote: how tokens may start a key after a comma
        self.quote_heads = sorted({w[: len(w) - len(w.lstrip(_WHITESPACE)) + 1]
                                   for w in self._id_of if w[0] in _HEAD_BYTES
                                   and w.lstrip(_WHITESPACE)[:1] == b'"'})

    def ids_of(self, word: bytes) -> list[int]:
        """Ids of the content tokens spelled `word` (none when no token is)."""
        shared = self._shared.get(word)
        if shared is not None:
            return shared
        i = self._id_of.get(word)
        return [] if i is None else [i]

    def spelled_along(self, kd: "_KeysDFA", d: int) -> tuple[list[int], list[int], list[int]]:
        """(ids, keys-DFA state after each) of the tokens `kd` reads from state d without
        dying — from `pre`, only those reaching the opening quote (whitespace alone leaves a
        key position as it was) — by a depth-first search along the DFA, pruned where no token
        extends the bytes; and the ids of the tokens that go on past the closing quote of a
        present key (each completes a repeated key)."""
        ids: list[int] = []
        ends: list[int] = []
        closers: list[int] = []
        words, n = self.sorted_tokens, len(self.sorted_tokens)
        todo = [(b"", d)]
        if d == kd.pre:
            todo = [(head, kd.after_quote) for head in self.quote_heads]
            for head in self.quote_heads:
                found = self.ids_of(head)
                ids += found
                ends += [kd.after_quote] * len(found)
        while todo:
            prefix, q = todo.pop()
            for b, q2 in kd.moves(q):
                word = prefix + bytes((b,))
                j = bisect_left(words, word)
                if j == n or not words[j].startswith(word):
                    continue
                if words[j] == word:
                    found = self.ids_of(word)
                    ids += found
                    ends += [q2] * len(found)
                    j += 1
                if kd.accepts(q2):  # every longer token starting with the closed key
                    stop = bisect_left(words, word[:-1] + bytes((word[-1] + 1,)), j)
                    closers += [i for w in words[j:stop] for i in self.ids_of(w)]
                else:
                    todo.append((word, q2))
        return ids, ends, closers

    def local_ends(self, mode: int, closing: bool, in_object: bool
                   ) -> dict[int, tuple[int, int] | None]:
        """`_local_end` of every id in `reaching(mode)` (computed once per vocabulary: it
        depends on the token's bytes alone)."""
        key = (mode, closing, in_object)
        out = self._local_ends.get(key)
        if out is None:
            out = self._local_ends[key] = {
                i: _local_end(self.token_bytes[i], mode, closing, in_object)
                for i in self.reaching(mode).tolist()}
        return out

    def reaching(self, mode: int) -> np.ndarray:
        """Ids that may close a key or end in a key position when read from `mode` (VALUE,
        VSTR or VESC); from a key position (KEY, KSTR, KESC), those that may do so past the
        current key (`_rest_reaches_key`)."""
        ids = self._reaching.get(mode)
        if ids is None:
            test = _rest_reaches_key if mode in (KEY, KSTR, KESC) else _reaches_key
            ids = self._reaching[mode] = np.array(
                [i for i in self._marked if test(self.token_bytes[i], mode)], np.int64)
        return ids


_TABLES: dict[str, _VocabTables] = {}


class _KeysDFA:
    """All JSON spellings (quotes included) of a set of keys: a state is alive while the bytes
    read could still spell one of the keys. State `pre` reads the whitespace and the opening
    quote before a key; `sink` is dead.

    Built as `json_literals_edges` builds a literal set's DFA — a trie of the keys' characters,
    each trie node followed by its spelling template's partial states — but one key at a time
    and copy-on-write (`with_key`): an object's next set of keys is its last one plus a key, so
    each costs the new key's trie nodes, not all keys again. Rows are {byte: state} dicts."""

    START, ROOT, FINAL = 0, 1, 2  # before the quote, after it (the trie root), after the key
    pre, sink = 1 << 40, (1 << 40) + 1

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = frozenset()
        self._rows: dict[int, dict[int, int]] = {
            self.START: {_QUOTE: self.ROOT}, self.ROOT: {}, self.pre: self._pre_row(),
            self.sink: {}}
        self._children: dict[int, dict[str, int]] = {self.ROOT: {}}
        self._partials: dict[int, tuple[int, ...]] = {}
        self._finals: frozenset[int] = frozenset()
        self._next = 3
        self._init_caches()
        for key in sorted(keys):
            self._insert(key)
        self.keys = keys

    @classmethod
    def _pre_row(cls) -> dict[int, int]:
        row = {b: cls.pre for b in _WHITESPACE}
        row[_QUOTE] = cls.ROOT
        return row

    def _init_caches(self) -> None:
        self.after_quote = self.ROOT
        self._moves: dict[int, list[tuple[int, int]]] = {}
        self._alive: dict[int, frozenset[int]] = {}
        self._along: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def with_key(self, key: str) -> "_KeysDFA":
        """The keys DFA of `self.keys | {key}` (this one is left as it is)."""
        new = object.__new__(_KeysDFA)
        new._rows = dict(self._rows)  # inner dicts are replaced, never changed, below
        new._children = dict(self._children)
        new._partials = dict(self._partials)
        new._finals, new._next = self._finals, self._next
        new._init_caches()
        # per-state caches of rows the new key leaves as they are (`_stamp` drops the others)
        new._moves, new._alive = dict(self._moves), dict(self._alive)
        new._insert(key)
        new.keys = self.keys | {key}
        return new

    def _insert(self, key: str) -> None:
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in key):
            return  # no spelling (see structgen.schema.lexemes): it cannot be written again
        node = self.ROOT
        for i, ch in enumerate(key):
            kids = self._children[node]
            if ch in kids:
                node = kids[ch]
                continue
            chain = list(range(self._next, self._next + len(key) - i))
            self._next += len(chain)
            self._children[node] = {**kids, ch: chain[0]}
            self._stamp(node)
            for j, state in enumerate(chain):
                nxt = key[i + j + 1 : i + j + 2]
                self._children[state] = {nxt: chain[j + 1]} if nxt else {}
            self._finals = self._finals | {chain[-1]}
            for state in chain:
                self._stamp(state)
            return
        if node not in self._finals:  # a prefix of a present key
            self._finals = self._finals | {node}
            self._stamp(node)

    def _stamp(self, node: int) -> None:
        """(Re)build the rows of trie node `node` and its partial spelling states."""
        for q in (node, *self._partials.get(node, ())):
            self._moves.pop(q, None)
            self._alive.pop(q, None)
        for q in self._partials.get(node, ()):
            del self._rows[q]
        kids = self._children[node]
        chars = tuple(sorted(kids))
        entries = _node_entries(chars, False)
        if entries is None:
            raise _NoSpelling
        size, local = entries
        partials = tuple(range(self._next, self._next + size - 1))
        self._next += size - 1
        rows: list[dict[int, int]] = [{} for _ in range(size)]
        for r, c, v in local:
            rows[r][c] = partials[v - 1] if v >= 1 else kids[chars[-2 - v]]
        if node in self._finals:
            rows[0][_QUOTE] = self.FINAL
        self._rows[node] = rows[0]
        for q, row in zip(partials, rows[1:]):
            self._rows[q] = row
        self._partials[node] = partials

    def row(self, q: int) -> dict[int, int]:
        """{byte: next state} of the bytes state q reads."""
        return self._rows.get(q, _NO_ROW)

    def accepts(self, q: int) -> bool:
        """Whether q is after the closing quote of a key."""
        return q == self.FINAL

    def moves(self, q: int) -> list[tuple[int, int]]:
        """(byte, next state) of the bytes state q reads (`pre` included), by byte."""
        out = self._moves.get(q)
        if out is None:
            out = self._moves[q] = sorted(self.row(q).items())
        return out

    def alive_bytes(self, q: int) -> frozenset[int]:
        out = self._alive.get(q)
        if out is None:
            out = self._alive[q] = frozenset(self.row(q))
        return out

    def along(self, tables: "_VocabTables", d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`tables.spelled_along(self, d)` as arrays (cached per state: the same keys come back
        in many grammar states)."""
        out = self._along.get(d)
        if out is None:
            found, after, closers = tables.spelled_along(self, d)
            out = self._along[d] = (np.array(found, np.int64), np.array(after, np.int64),
                                    np.array(closers, np.int64))
        return out

    def state_of(self, partial: bytes) -> int:
        """State inside a key string whose bytes so far are `partial` (DEAD: no key spelled)."""
        q, rows = self.after_quote, self._rows
        for b in partial:
            q = rows.get(q, _NO_ROW).get(b, DEAD)
            if q < 0:
                return DEAD
        return q


_ENDLESS: "weakref.WeakKeyDictionary[ByteDFA, EndlessStates]" = weakref.WeakKeyDictionary()


class _NoSpelling(Exception):
    """A key character without a JSON spelling (a lone surrogate: not from our grammars)."""


_NO_ROW: dict[int, int] = {}


class KeyTrackingAutomaton(TokenAutomaton):
    """A `GrammarAutomaton` for JSON texts, with no object holding the same key twice.

    States are (grammar state, tracker state). The grammar must guarantee that wherever it
    requires another object entry, one with a fresh key exists (see the module doc).
    """

    #: Bound on each per-state memo (dropped wholesale when full, like the grammar's caches).
    max_memo = 100_000

    def __init__(self, grammar: TokenAutomaton, terminal_dfas: Sequence[ByteDFA],
                 literal_keys: Mapping[int, str] | None = None) -> None:
        """`grammar`: a `GrammarAutomaton` of JSON texts whose states are sets of (terminal,
        DFA state, origin) lexemes, `terminal_dfas` its terminals' DFAs, `literal_keys` the key
        each key terminal that spells one key spells (its DFA accepts spellings of that key
        only)."""
        super().__init__(grammar.vocab)
        self.grammar = grammar
        self._dfas = terminal_dfas
        self._literal_keys = dict(literal_keys or {})
        self._outs: dict[tuple[int, int], frozenset[int]] = {}
        self._outs_of: dict[frozenset, frozenset[int]] = {}
        self._steps: dict[frozenset, list[tuple[int, frozenset[tuple[int, int]]]]] = {}
        self._stepped: dict[tuple[frozenset, int], frozenset[tuple[int, int]]] = {}
        tables = _TABLES.get(grammar.vocab.fingerprint)
        if tables is None:
            tables = _TABLES[grammar.vocab.fingerprint] = _VocabTables(grammar.vocab)
        self._tables = tables
        self._keys_dfas: dict[frozenset[str], _KeysDFA] = {}
        self._last_keys_dfa: _KeysDFA | None = None
        self._lexemes_of: dict[State, frozenset[tuple[int, int]]] = {}
        self._witnesses: dict[tuple, bytes | None] = {}
        self._removed: dict[State, np.ndarray] = {}
        self._endless_states: dict[int, EndlessStates] = {}
        self._endless_of: dict[frozenset, tuple] = {}
        self._stuck: dict[tuple, np.ndarray] = {}
        self._cands: dict[tuple[State, int, bool, bool], list[int]] = {}
        self._after: dict[tuple[State, bytes], State | None] = {}
        self._fresh: dict[tuple, bool] = {}

    def clear_caches(self) -> None:
        super().clear_caches()
        self.grammar.clear_caches()
        self._keys_dfas.clear()
        self._last_keys_dfa = None
        self._lexemes_of.clear()
        self._witnesses.clear()
        self._outs_of.clear()
        self._steps.clear()
        self._stepped.clear()
        self._removed.clear()
        self._endless_of.clear()
        self._stuck.clear()
        self._cands.clear()
        self._after.clear()
        self._fresh.clear()

    @property
    def start(self) -> State:
        return (self.grammar.start, TRACK_START)

    def grammar_state(self, state: State) -> State:
        """The grammar's part of a state (trackers composed around this one read it)."""
        return state[0]

    def is_accepting(self, state: State) -> bool:
        return state is not DONE and self.grammar.is_accepting(state[0])

    # stepping -------------------------------------------------------------------------------

    def _keys_dfa(self, keys: frozenset[str], near: frozenset[str] | None = None) -> _KeysDFA:
        """The keys DFA of `keys` (cached), grown by one key from the last one built or from
        `near`'s (a set it may extend by one key: tokens that close a key and open another in
        the same object, which Gemma-3's vocabulary has many of) when it can."""
        k = self._keys_dfas.get(keys)
        if k is None:
            if len(self._keys_dfas) >= 4096:
                self._keys_dfas.clear()
            last = self._last_keys_dfa
            base = None
            if near is not None and len(near) + 1 == len(keys) and near < keys:
                base = self._keys_dfas.get(near)
            if base is not None:
                k = base.with_key(next(iter(keys - near)))  # type: ignore[operator]
            elif last is not None and len(last.keys) + 1 == len(keys) and last.keys < keys:
                k = self._last_keys_dfa = last.with_key(next(iter(keys - last.keys)))
            else:
                k = self._last_keys_dfa = _KeysDFA(keys)
            self._keys_dfas[keys] = k
        return k

    def _advance_bytes(self, state: State, data: bytes) -> State | None:
        g, track = state
        g = self.grammar._advance_bytes(g, data)
        if g is None:
            return None
        track = feed(track, data)
        if track is None:
            return None
        if _at_key(track) and self._witness(g, track) is None:
            return None
        return (g, track)

    def _witness(self, g: State, track: Track, near: frozenset[str] | None = None
                 ) -> bytes | None:
        """Bytes from a key position (`_at_key(track)`) to where a key that is not present in
        its object is certain — the first byte that stops spelling every present key, or the
        closing quote of a key not present; None when the grammar allows no such key.
        `near`: keys whose DFA is built, which `track`'s may extend by one (`_keys_dfa`)."""
        stack, mode, partial = track
        keys = stack[1]
        memo_key = (g, mode, partial, keys)
        if memo_key in self._witnesses:
            return self._witnesses[memo_key]
        kd = self._keys_dfa(keys, near)
        if mode == KEY:
            found = self._before_key(g, kd, set())
        else:
            d = kd.state_of(partial)
            found = b"" if d == DEAD else self._in_key(g, d, kd)
        if len(self._witnesses) >= self.max_memo:
            self._witnesses.clear()
        self._witnesses[memo_key] = found
        return found

    def _before_key(self, g: State, kd: _KeysDFA, seen: set) -> bytes | None:
        """Witness from a key position before the key's opening quote (whitespace may come).
        After a whitespace byte that leaves a state narrower than g (`narrower`: a run one
        byte longer, the same lexeme), only its quote is tried: any witness further on from
        there is one from g, whose other ways are searched here. Without that, a position
        with no fresh key walked every length of a 32-byte whitespace run (~1.5 ms)."""
        for b in (_QUOTE, *_WHITESPACE):
            g2 = self.grammar._advance_bytes(g, bytes((b,)))
            if g2 is None:
                continue
            if b == _QUOTE:
                rest = self._in_key(g2, kd.after_quote, kd)
            elif g2 in seen:
                continue
            else:
                seen.add(g2)
                if self.grammar.narrower(g2, g, _WHITESPACE):
                    quoted = self.grammar._advance_bytes(g2, b'"')
                    rest = None if quoted is None else self._in_key(quoted, kd.after_quote, kd)
                    rest = None if rest is None else b'"' + rest
                else:
                    rest = self._before_key(g2, kd, seen)
            if rest is not None:
                return bytes((b,)) + rest
        return None

    def _in_key(self, g: State, d: int, kd: _KeysDFA) -> bytes | None:
        """Witness inside a key string: a search over the key terminals' DFAs (the lexemes of
        grammar state g, all key strings here) jointly with the present keys' DFA state d.
        A key lexeme that completes was expected where it started, so the grammar accepts it."""
        return self._in_key_lexemes(self._key_lexemes(g), d, kd)

    def _key_lexemes(self, g: State) -> frozenset[tuple[int, int]]:
        """(terminal, DFA state) of grammar state g's lexemes (cached: states are large sets)."""
        out = self._lexemes_of.get(g)
        if out is None:
            if len(self._lexemes_of) >= self.max_memo:
                self._lexemes_of.clear()
            out = self._lexemes_of[g] = frozenset((t, s) for t, s, _ in g if t >= 0)
        return out

    def _in_key_lexemes(self, lexemes: frozenset[tuple[int, int]], d: int, kd: _KeysDFA
                        ) -> bytes | None:
        memo_key = (lexemes, d, kd)
        if memo_key in self._witnesses:
            return self._witnesses[memo_key]
        literal = self._literal_keys
        if all(literal.get(t) in kd.keys for t, _ in lexemes):
            # Every lexeme spells a present key, and d read the same bytes (a prefix of those
            # spellings): every way on spells a present key. (A search would also follow each
            # escape spelling of them: ~100 steps for a few keys.)
            self._witnesses[memo_key] = None
            return None
        seen = {(lexemes, d)}
        todo: list[tuple[frozenset, int, bytes]] = [(lexemes, d, b"")]
        found = None
        while todo:
            lexemes, d, path = todo.pop()
            outs = self._lexeme_outs(lexemes)
            leaving = outs - kd.alive_bytes(d)
            if leaving:  # a byte that stops spelling every present key (or closes a new one)
                found = path + bytes((_best_byte(leaving),))
                break
            # Every byte read here goes on spelling a present key: few bytes, best popped first.
            row = kd.row(d)
            for b, nxt in self._lexeme_steps(lexemes):
                nd = row[b]
                if not kd.accepts(nd) and (nxt, nd) not in seen:
                    seen.add((nxt, nd))  # (accepting: the closing quote of a present key)
                    todo.append((nxt, nd, path + bytes((b,))))
        if found is None:  # nothing reachable from any pair met has a witness either
            known = self._witnesses
            known.update(dict.fromkeys([(lx, q, kd) for lx, q in seen if (lx, q, kd) not in known]))
        self._witnesses[memo_key] = found
        return found

    def _fresh_along(self, lexemes: frozenset[tuple[int, int]], d: int, kd: _KeysDFA) -> bool:
        """`_in_key_lexemes(lexemes, d, kd) is not None`, at once when a lexeme spells one key
        that is not present: its completion closes that key, and the grammar accepts it (it was
        expected where it started). Searches for a witness's bytes took ~500 steps where such
        a key shared its first bytes with many present ones."""
        known = self._witnesses.get((lexemes, d, kd), _UNKNOWN)
        if known is not _UNKNOWN:
            return known is not None
        literal, present = self._literal_keys, kd.keys
        if any(key is not None and key not in present
               for key in map(literal.get, (t for t, _ in lexemes))):
            return True
        return self._in_key_lexemes(lexemes, d, kd) is not None

    def _lexeme_steps(self, lexemes: frozenset[tuple[int, int]]
                      ) -> list[tuple[int, frozenset[tuple[int, int]]]]:
        """(byte, lexemes after it) for the bytes some lexeme reads, from the worst byte to the
        best. Asked only where every such byte goes on spelling a present key (few bytes);
        cached: exhaustive searches over the same present keys meet the same sets again."""
        out = self._steps.get(lexemes)
        if out is None:
            if len(self._steps) >= self.max_memo:
                self._steps.clear()
            out = self._steps[lexemes] = [
                (b, self._step_lexemes(lexemes, b))
                for b in sorted(self._lexeme_outs(lexemes), key=_probe_rank, reverse=True)]
        return out

    def _lexeme_outs(self, lexemes: frozenset[tuple[int, int]]) -> frozenset[int]:
        """Bytes some lexeme reads (cached per lexeme set: a witness search's first question,
        and most searches end with it)."""
        out = self._outs_of.get(lexemes)
        if out is None:
            if len(self._outs_of) >= self.max_memo:
                self._outs_of.clear()
            out = self._outs_of[lexemes] = frozenset().union(
                *(self._out_bytes(t, s) for t, s in lexemes))
        return out

    def _out_bytes(self, t: int, s: int) -> frozenset[int]:
        out = self._outs.get((t, s))
        if out is None:
            out = self._outs[(t, s)] = frozenset(
                np.flatnonzero(self._dfas[t].transitions[s] >= 0).tolist())
        return out

    # masks ----------------------------------------------------------------------------------

    def _refused(self, state: State) -> np.ndarray:
        """Ids the grammar allows in `state` that the key tracker refuses (cached)."""
        bad = self._removed.get(state)
        if bad is not None:
            return bad
        g, track = state
        stack, mode, partial = track
        keys = stack[1] if stack else None
        refused: list[int] = []
        closing = mode in (KSTR, KESC)  # closing the current key cannot repeat a key...
        cand = None
        if mode in (KEY, KSTR, KESC) and keys:
            # the current key: tokens ending where a present key could still be spelled, and
            # those completing a present key (refused outright)
            kd = self._keys_dfa(keys)
            d = kd.pre if mode == KEY else kd.state_of(partial)
            if d != DEAD:
                closing = False  # ...unless it may spell a present one
                allowed = self.grammar.mask(g).numpy()
                ids, ends, closers = kd.along(self._tables, d)
                refused += closers[allowed[closers]].tolist()
                if mode == KEY:
                    cand = sorted(set(self._candidates(g, mode, False, True)).union(
                        ids[allowed[ids]].tolist()))
                else:
                    stuck = self._inside_key(g, kd, d, ids, ends)
                    refused += stuck[allowed[stuck]].tolist()
        if cand is None:
            cand = self._candidates(g, mode, closing, bool(stack) and stack[1] is not None)
        tb = self.vocab.token_bytes
        after_comma: dict[tuple[bytes, Track], bool] = {}
        for i in cand:  # allowed by the grammar: only the tracker's verdict is needed
            data = tb[i]
            end = feed(track, data)
            if end is None:
                refused.append(i)
            elif _at_key(end) and not self._fresh_by_grammar(g, data, end[1], len(end[2])):
                # Tokens ending after the same comma with more or less whitespace share one
                # verdict: whitespace does not change which keys may follow (what comes
                # before the comma may: `"x",` and `"x.",` can close different branches).
                if end[1] == KEY:
                    comma = (data.rstrip(_WHITESPACE), end)
                    ok = after_comma.get(comma)
                    if ok is None:
                        g2 = self._grammar_after(g, data)
                        ok = after_comma[comma] = (
                            g2 is not None and self._witness(g2, end, keys) is not None)
                else:
                    # inside a key, not certainly fresh by its lexemes alone: fresh when it no
                    # longer spells a present key (no grammar step: the grammar allows the
                    # token, so its state after it exists), else by search — from the key
                    # lexemes after the opening quote when the key opened in this token
                    kd2 = self._keys_dfa(end[0][1], keys)
                    d2 = kd2.state_of(end[2])
                    if d2 == DEAD:
                        ok = True
                    elif len(end[2]) < len(data):
                        gq = self._grammar_after(g, data[: len(data) - len(end[2])])
                        ok = gq is not None and self._fresh_along(self._walk_lexemes(
                            self._key_lexemes(gq), end[2]), d2, kd2)
                    else:
                        g2 = self._grammar_after(g, data)
                        ok = g2 is not None and self._witness(g2, end, keys) is not None
                if not ok:
                    refused.append(i)
        bad = np.unique(np.array(refused, np.int64)) if refused else _NO_IDS
        if len(self._removed) >= self.max_memo:
            self._removed.clear()
        self._removed[state] = bad
        return bad

    def _candidates(self, g: State, mode: int, closing: bool, in_object: bool) -> list[int]:
        """Ids grammar state g allows that may close a key or reach a key position from
        `mode`, less those the tracker takes whatever its state: they close no key (or, when
        `closing`, only the current one, which spells no present key), leave no container
        (an object when `in_object`, else an array or none), and end outside a key position
        or where a key that is not present certainly follows (`_fresh_by_grammar`). Cached
        per (g, mode, closing, in_object): a grammar state recurs with many tracker states —
        other keys present, other enclosing objects."""
        key = (g, mode, closing, in_object)
        out = self._cands.get(key)
        if out is None:
            cand = self._tables.reaching(mode)  # from a key position: past the current key
            ends = self._tables.local_ends(mode, closing, in_object)
            tb = self.vocab.token_bytes
            out = []
            for i in cand[self.grammar.mask(g).numpy()[cand]].tolist():
                end = ends[i]
                if end is None or end[0] in (KEY, KSTR, KESC) and not self._fresh_by_grammar(
                        g, tb[i], *end):
                    out.append(i)
            if len(self._cands) >= self.max_memo:
                self._cands.clear()
            self._cands[key] = out
        return out

    def _grammar_after(self, g: State, data: bytes) -> State | None:
        """The grammar's state after `data` from g (cached: the same tokens are asked again
        from g under other tracker states)."""
        key = (g, data)
        if key in self._after:
            return self._after[key]
        if len(self._after) >= self.max_memo:
            self._after.clear()
        out = self._after[key] = self.grammar._advance_bytes(g, data)
        return out

    def _fresh_by_grammar(self, g: State, data: bytes, mode: int, n: int) -> bool:
        """Whether, after token `data` from grammar state g ends at a key position (scanner
        `mode` there, n bytes of the key string read), a key that is not present certainly
        follows whatever keys are present: a key lexeme of the key string opened there (by a
        quote right after the token, before a key) or in the token (read on by its last n
        bytes) can be endless (`_endless_after`). Cached per (g, token, mode, n): the answer
        depends on the grammar alone."""
        if mode == KEY:  # whitespace after the comma does not change which keys may follow
            data = data.rstrip(_WHITESPACE)
        key = (g, data, mode, n)
        out = self._fresh.get(key)
        if out is None:
            if mode == KEY:
                head, rest = data + b'"', b""
            else:  # (n >= len(data): still the key the token started in, not decided here)
                head, rest = data[: max(len(data) - n, 0)], data[len(data) - n :]
            gq = self._grammar_after(g, head) if head else None
            out = gq is not None and self._endless_after(self._key_lexemes(gq), rest)
            if len(self._fresh) >= self.max_memo:
                self._fresh.clear()
            self._fresh[key] = out
        return out

    def _inside_key(self, g: State, kd: _KeysDFA, d: int, ids: np.ndarray, ends: np.ndarray
                    ) -> np.ndarray:
        """Of tokens read inside a key string (grammar state g, keys-DFA state d) that keep
        spelling a present key (`ids`, keys-DFA states `ends` after them), those after which no
        fresh key can follow: decided on the key terminals' DFAs alone — no lexeme ends inside
        a string, so the parser has nothing to do until the closing quote. Cached per (key
        lexemes, keys DFA, d): the same key prefix recurs in other objects' grammar states."""
        lexemes = self._key_lexemes(g)
        memo_key = (lexemes, kd, d)
        out = self._stuck.get(memo_key)
        if out is None:
            tb = self.vocab.token_bytes
            stuck = [i for i, e in zip(ids.tolist(), ends.tolist())
                     if kd.accepts(e) or not self._fresh_key_after(lexemes, tb[i], e, kd)]
            if len(self._stuck) >= self.max_memo:
                self._stuck.clear()
            out = self._stuck[memo_key] = np.array(stuck, np.int64)
        return out

    def _fresh_key_after(self, lexemes: frozenset[tuple[int, int]], data: bytes, d: int,
                         kd: _KeysDFA) -> bool:
        """Whether, inside a key string, a key that is not present can still be spelled after
        `data` (keys-DFA state d after it): at once when `_endless_after`, else by search."""
        walked = self._walk_lexemes(lexemes, data)
        return self._endless_after(walked, b"") or self._fresh_along(walked, d, kd)

    def _endless_after(self, lexemes: frozenset[tuple[int, int]], data: bytes) -> bool:
        """Whether a key lexeme reads `data` into a state whose strings are endless: then a key
        that is not present can be spelled (present keys have finitely many spellings)."""
        return any(s in endless
                   for _, s, endless in self._endless_lexemes(self._walk_lexemes(lexemes, data)))

    def _endless_lexemes(self, lexemes: frozenset[tuple[int, int]]) -> tuple:
        """(terminal, DFA state, its endless states) of the lexemes whose terminal has any."""
        out = self._endless_of.get(lexemes)
        if out is None:
            if len(self._endless_of) >= self.max_memo:
                self._endless_of.clear()
            out = self._endless_of[lexemes] = tuple(
                (t, s, e) for t, s in lexemes for e in (self._endless(t),) if e)
        return out

    def _endless(self, t: int) -> EndlessStates:
        """States of terminal t's DFA with infinitely many accepted continuations (cached per
        terminal, and per DFA object across automata: key DFAs recur across schemas)."""
        out = self._endless_states.get(t)
        if out is None:
            dfa = self._dfas[t]
            out = _ENDLESS.get(dfa)
            if out is None:
                out = _ENDLESS[dfa] = EndlessStates(dfa)
            self._endless_states[t] = out
        return out

    def _walk_lexemes(self, lexemes: frozenset[tuple[int, int]], data: bytes
                      ) -> frozenset[tuple[int, int]]:
        """The key lexemes after `data` inside a key string (no lexeme ends there), a byte at a
        time through a memo per (lexemes, byte): a key position's candidate tokens share their
        first bytes (`t`, `tr`, `tr_`), and its lexemes are one per key of the object (~100)."""
        for b in data:
            lexemes = self._step_lexemes(lexemes, b)
            if not lexemes:
                break
        return lexemes

    def _step_lexemes(self, lexemes: frozenset[tuple[int, int]], b: int
                      ) -> frozenset[tuple[int, int]]:
        """The key lexemes after byte b (cached per (lexemes, byte))."""
        out = self._stepped.get((lexemes, b))
        if out is None:
            if len(self._stepped) >= self.max_memo:
                self._stepped.clear()
            dfas = self._dfas
            out = self._stepped[(lexemes, b)] = frozenset(
                (t, s2) for t, s in lexemes for s2 in (dfas[t].rows[s][b],) if s2 >= 0)
        return out

    def mask(self, state: State) -> torch.Tensor:
        """The grammar's mask (the same cached tensor) unless the tracker refuses some of its
        tokens here; then a copy without them (cached per state). Do not modify it."""
        m = self._masks.get(state)
        if m is None:
            if state is DONE:
                return super().mask(state)
            m = self._keep_without(state, self.grammar.mask(state[0]), self._refused(state))
        return m

    def allowed_ids(self, state: State) -> np.ndarray:
        if state is DONE:
            return np.empty(0, np.int64)
        ids = self.grammar.allowed_ids(state[0])
        bad = self._refused(state)
        return ids[~np.isin(ids, bad)] if len(bad) else ids

    def _content_ids(self, state: State) -> np.ndarray:
        ids = self.allowed_ids(state)
        return ids[~np.isin(ids, self._eos)]

    def only_eos(self, state: State) -> bool:
        # Accepting states are at the top level, outside every object: nothing is refused there.
        return state is not DONE and self.grammar.only_eos(state[0])

    # completion -----------------------------------------------------------------------------

    def forced_bytes(self, state: State) -> bytes:
        # The tracker only removes continuations (never all: states stay live), so bytes the
        # grammar forces are forced here too.
        return self.grammar.forced_bytes(state[0])

    def completion_bytes(self, state: State) -> bytes | None:
        """The grammar's shortest completion where it repeats no key; where it would, a fresh
        key is chosen instead (the witness of the key position) and the grammar completes from
        there — repeated until no key repeats."""
        out = bytearray()
        for _ in range(1024):
            g, track = state
            rest = self.grammar.completion_bytes(g)
            if rest is None:
                return None
            at, start = _first_repeat(track, rest)
            if at is None:
                return bytes(out) + rest
            state = self._advance_bytes(state, rest[:start])
            assert state is not None, "grammar completion left the tracked language"
            witness = self._witness(state[0], state[1])
            assert witness is not None, "a key position without a fresh key"
            state = self._advance_bytes(state, witness)
            assert state is not None
            out += rest[:start] + witness
        return None


def _local_end(data: bytes, mode: int, closing: bool, in_object: bool
               ) -> tuple[int, int] | None:
    """(scanner mode, bytes of the key string read) after `data` from `mode` in an object
    (`in_object`; else in an array or at the top level), when it leaves no container and
    closes no key (`closing`: but for the current key string); else None."""
    pushed: list[bool] = []  # containers opened by `data`: is an object
    n = 0  # bytes of the key string being read
    current = mode in (KSTR, KESC)  # still in the key string it started in
    for b in data:
        if mode in (VSTR, KSTR):
            if b == _QUOTE:
                if mode == KSTR:
                    if not current or not closing:
                        return None
                    current, n = False, 0
                mode = VALUE
            elif b == _BACKSLASH:
                mode += 1
            if mode in (KSTR, KESC):
                n += 1
        elif mode in (VESC, KESC):
            mode -= 1
            if mode == KSTR:
                n += 1
        elif b == _QUOTE:
            mode, n = (KSTR, 0) if mode == KEY else (VSTR, n)
        elif b == 0x7B:
            pushed.append(True)
            mode = KEY
        elif b == 0x5B:
            pushed.append(False)
            mode = VALUE
        elif b in (0x7D, 0x5D):
            if not pushed:
                return None
            pushed.pop()
            mode = VALUE
        elif b == _COMMA:
            mode = KEY if (pushed[-1] if pushed else in_object) else VALUE
        elif b == 0x3A:
            mode = VALUE
    return None if current else (mode, n)


def _at_key(track: Track) -> bool:
    """A key position in an object that already holds keys: after its comma, or inside a key."""
    stack, mode, _ = track
    return mode in (KEY, KSTR, KESC) and bool(stack) and bool(stack[1])


def _first_repeat(track: Track, data: bytes) -> tuple[int | None, int]:
    """(index of the closing quote of the first repeated key in `data`, index where that key's
    position starts: after its object's comma, or 0 when it started before `data`); (None, 0)
    when no key repeats."""
    start = 0
    for i in range(len(data)):
        nxt = feed(track, data[i : i + 1])
        if nxt is None:
            return i, start
        if nxt[1] == KEY and track[1] != KEY:
            start = i + 1
        track = nxt
    return None, 0
