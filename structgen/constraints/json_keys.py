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
key strings only those that keep spelling a present key (a walk of the token trie over that
DFA). A state with no candidate costs one dictionary lookup more than the grammar's mask.
"""
from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import torch

from ..automata.bytedfa import DEAD, ByteDFA
from ..schema.lexemes import json_string_dfa
from ..vocab.token_bytes import Vocabulary
from ..vocab.trie import trie_for
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
# Bytes a witness search tries first: a closing quote (the shortest key), then ASCII, then the rest.
_PROBE_ORDER = [_QUOTE] + [b for b in range(0x20, 0x100) if b != _QUOTE]


def decode_key(raw: bytes) -> str:
    """The value of a JSON string from the bytes between its quotes."""
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


class _VocabTables:
    """Per-vocabulary candidate sets (computed once per vocabulary, on first use)."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.token_bytes = vocab.token_bytes
        content = [i for i, b in enumerate(vocab.token_bytes) if b and i not in vocab.special_ids]
        quotes = np.array([vocab.token_bytes[i].count(b'"') for i in content], np.int64)
        ids = np.array(content, np.int64)
        self.one_quote = ids[quotes >= 1]
        self.two_quotes = ids[quotes >= 2]
        self._marked = [i for i in content if b'"' in vocab.token_bytes[i]
                        or b"," in vocab.token_bytes[i]]
        self._reaching: dict[int, np.ndarray] = {}

    def reaching(self, mode: int) -> np.ndarray:
        """Ids that may close a key or end in a key position when read from `mode` (VALUE,
        VSTR or VESC)."""
        ids = self._reaching.get(mode)
        if ids is None:
            ids = self._reaching[mode] = np.array(
                [i for i in self._marked if _reaches_key(self.token_bytes[i], mode)], np.int64)
        return ids


_TABLES: dict[str, _VocabTables] = {}


class _KeysDFA:
    """All JSON spellings (quotes included) of a set of keys, as a trie-walk source: a state
    is alive while the bytes read could still spell one of the keys. State `pre` reads the
    whitespace and the opening quote before a key."""

    def __init__(self, keys: frozenset[str]) -> None:
        dfa = json_string_dfa(literals=sorted(keys))
        n = dfa.n_states
        self.dfa: ByteDFA = dfa
        self.pre, self.sink = n, n + 1
        table = np.where(dfa.transitions >= 0, dfa.transitions, self.sink).astype(np.int64)
        pre = np.full((1, 256), self.sink, np.int64)
        pre[0, list(_WHITESPACE)] = self.pre
        pre[0, _QUOTE] = dfa.rows[dfa.initial][_QUOTE]
        self._table = np.vstack([table, pre, np.full((1, 256), self.sink, np.int64)]).ravel()
        self.after_quote = dfa.rows[dfa.initial][_QUOTE]

    def step(self, states: np.ndarray, data: np.ndarray) -> np.ndarray:
        return self._table[states * 256 + data]

    def state_of(self, partial: bytes) -> int:
        """State inside a key string whose bytes so far are `partial` (DEAD: no key spelled)."""
        return self.dfa.walk(self.after_quote, partial)


class KeyTrackingAutomaton(TokenAutomaton):
    """A `GrammarAutomaton` for JSON texts, with no object holding the same key twice.

    States are (grammar state, tracker state). The grammar must guarantee that wherever it
    requires another object entry, one with a fresh key exists (see the module doc).
    """

    #: Bound on each per-state memo (dropped wholesale when full, like the grammar's caches).
    max_memo = 100_000

    def __init__(self, grammar: TokenAutomaton) -> None:
        super().__init__(grammar.vocab)
        self.grammar = grammar
        tables = _TABLES.get(grammar.vocab.fingerprint)
        if tables is None:
            tables = _TABLES[grammar.vocab.fingerprint] = _VocabTables(grammar.vocab)
        self._tables = tables
        self._keys_dfas: dict[frozenset[str], _KeysDFA] = {}
        self._witnesses: dict[tuple, bytes | None] = {}
        self._removed: dict[State, np.ndarray] = {}

    def clear_caches(self) -> None:
        super().clear_caches()
        self.grammar.clear_caches()
        self._keys_dfas.clear()
        self._witnesses.clear()
        self._removed.clear()

    @property
    def start(self) -> State:
        return (self.grammar.start, TRACK_START)

    def is_accepting(self, state: State) -> bool:
        return state is not DONE and self.grammar.is_accepting(state[0])

    # stepping -------------------------------------------------------------------------------

    def _keys_dfa(self, keys: frozenset[str]) -> _KeysDFA:
        k = self._keys_dfas.get(keys)
        if k is None:
            if len(self._keys_dfas) >= 4096:
                self._keys_dfas.clear()
            k = self._keys_dfas[keys] = _KeysDFA(keys)
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

    def _witness(self, g: State, track: Track) -> bytes | None:
        """Bytes from a key position (`_at_key(track)`) to where a key that is not present in
        its object is certain — the first byte that stops spelling every present key, or the
        closing quote of a key not present; None when the grammar allows no such key."""
        stack, mode, partial = track
        keys = stack[1]
        memo_key = (g, mode, partial, keys)
        if memo_key in self._witnesses:
            return self._witnesses[memo_key]
        kd = self._keys_dfa(keys)
        d = kd.pre if mode == KEY else kd.state_of(partial)
        found = b"" if d == DEAD else self._search(g, d, kd, set())
        if len(self._witnesses) >= self.max_memo:
            self._witnesses.clear()
        self._witnesses[memo_key] = found
        return found

    def _search(self, g: State, d: int, kd: _KeysDFA, seen: set) -> bytes | None:
        """Depth-first witness search from grammar state g and keys-DFA state d (both alive)."""
        advance = self.grammar._advance_bytes
        if d == kd.pre:
            for b in (_QUOTE, *_WHITESPACE):
                g2 = advance(g, bytes((b,)))
                if g2 is not None:
                    nd = kd.after_quote if b == _QUOTE else kd.pre
                    if (g2, nd) not in seen:
                        seen.add((g2, nd))
                        rest = self._search(g2, nd, kd, seen)
                        if rest is not None:
                            return bytes((b,)) + rest
            return None
        row = kd.dfa.rows[d]
        for b in _PROBE_ORDER:  # a byte leaving every present key's spelling is a witness
            if row[b] < 0 and advance(g, bytes((b,))) is not None:
                return bytes((b,))
        accepting = kd.dfa.accepting
        for b in _PROBE_ORDER:
            nd = row[b]
            if nd < 0 or accepting[nd]:  # accepting: the closing quote of a present key
                continue
            g2 = advance(g, bytes((b,)))
            if g2 is not None and (g2, nd) not in seen:
                seen.add((g2, nd))
                rest = self._search(g2, nd, kd, seen)
                if rest is not None:
                    return bytes((b,)) + rest
        return None

    # masks ----------------------------------------------------------------------------------

    def _refused(self, state: State) -> np.ndarray:
        """Ids the grammar allows in `state` that the key tracker refuses (cached)."""
        bad = self._removed.get(state)
        if bad is not None:
            return bad
        g, track = state
        stack, mode, partial = track
        allowed = self.grammar.mask(g).numpy()
        t = self._tables
        keys = stack[1] if stack else None
        if mode in (KEY, KSTR, KESC):
            parts = [t.two_quotes if mode == KEY else t.one_quote]
            if keys:  # tokens ending where a present key could still be spelled
                kd = self._keys_dfa(keys)
                d = kd.pre if mode == KEY else kd.state_of(partial)
                if d != DEAD:
                    parts.append(trie_for(self.vocab).walk(kd, d)[0])
            cand = np.unique(np.concatenate(parts))
        else:
            cand = t.reaching(mode)
        cand = cand[allowed[cand]]
        tb = self.vocab.token_bytes
        bad = np.array([i for i in cand.tolist() if self._advance_bytes(state, tb[i]) is None],
                       np.int64)
        if len(self._removed) >= self.max_memo:
            self._removed.clear()
        self._removed[state] = bad
        return bad

    def mask(self, state: State) -> torch.Tensor:
        """The grammar's mask (the same cached tensor) unless the tracker refuses some of its
        tokens here; then a copy without them (cached per state). Do not modify it."""
        if state is DONE:
            return super().mask(state)
        m = self._masks.get(state)
        if m is not None:
            return m
        base = self.grammar.mask(state[0])
        bad = self._refused(state)
        if not len(bad):
            return base
        m = base.clone()
        m[torch.from_numpy(bad)] = False
        return self._keep_mask(state, m)

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
