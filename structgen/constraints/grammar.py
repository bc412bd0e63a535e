"""`Grammar`: context-free constraints (Lark grammars, GBNF) as lazily built byte automata.

This is Earley parsing with a dynamic lexer, one byte at a time. A grammar state is the set of
lexemes in progress, each a (terminal, DFA state, Earley set where it started) triple. Reading a
byte advances every lexeme in its terminal's DFA — the lexer's business, which needs no parser.
Where some lexemes may end, the parser builds ONE Earley set for this position from all of
them (scanning each finished terminal from where it started), and the lexemes that set expects
start here. Merging per position is what keeps ambiguous lexing polynomial: `----` read as `--`
or `-`,`-` leads to one set, not one per segmentation.

States are interned as integers with a 256-entry transition row each, built the first time a
mask walk or a token reaches them, so `TokenTrie.walk` works unchanged: tokens inside a lexeme
only touch DFA rows, and the parser runs only at the trie nodes where a lexeme can end.

Masks split the vocabulary the way the lexer/parser split suggests. A token that stays inside
one of the state's lexemes (in progress, or starting here) is allowed whatever the parser says:
that lexeme's terminal was expected where it began and its DFA state can still finish. Which
tokens do so depends only on the (terminal, DFA state) pairs — the state's *shape* — not on the
Earley sets, so it is computed once per pair and shared by every state of that shape. Only the
tokens that leave a lexeme after it could end (`",` or `1}` in JSON) need the parser: they are
walked from the state itself, over a small trie of just those tokens. Where many of them share
their next byte (whitespace leaves into almost anything; an identifier that may end at every
byte leaves into every keyword), the same split is applied one byte down the trie, to the
*view* of the tokens starting with that byte, from the one state after it: ` name` then stays
inside the identifier that starts after the space, and is allowed without a walk.
"""
from __future__ import annotations

import gc
import time
import weakref
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterator

import numpy as np
import torch

from ..automata.bytedfa import ByteDFA
from ..automata.completion import ParserCompletions, dfa_completion
from ..automata.earley import ParserState
from ..automata.earley_native import NativeEarleyParser, new_parser
from ..automata.grammar import CompiledGrammar, compile_lark, follow_bytes
from ..vocab import native
from ..vocab.token_bytes import Vocabulary
from ..vocab.trie import TokenTrie, expand_ranges, trie_for
from .base import DONE, Constraint, State, TokenAutomaton

DEAD = 0  # grammar state 0 is the sink: no continuation
UNKNOWN = -1  # a transition not computed yet
BOUNDARY = -1  # pseudo-terminal of the start state: an empty lexeme already complete

Lexeme = tuple[int, int, ParserState]  # (terminal, DFA state, Earley set where it started)
_HASH_WEIGHTS = np.random.default_rng(0).integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


def _distinct_columns(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct columns, index of each column's distinct one). Columns are hashed to one
    64-bit key each (random odd multipliers, wrapping arithmetic) for a fast 1-D unique; a hash
    collision is detected and falls back to an exact column unique."""
    if len(matrix) <= len(_HASH_WEIGHTS):
        keys = ((matrix + 1).astype(np.uint64) * _HASH_WEIGHTS[: len(matrix), None]).sum(
            axis=0, dtype=np.uint64)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        columns, inverse = matrix[:, first], inverse.reshape(-1)
        if np.array_equal(columns[:, inverse], matrix):
            return columns, inverse
    columns, inverse = np.unique(matrix, axis=1, return_inverse=True)
    return columns, inverse.reshape(-1)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off, then move what it allocated (mostly
    long-lived cache entries) to the oldest generation: re-enabled as it was, the collector
    would traverse every one of them at the next allocation (a young collection of tens of
    thousands of objects, ~4 ms after a fresh mask of the C-like grammar on Gemma-3) only to
    promote them. `gc.freeze()` then `gc.unfreeze()` promotes everything young in O(1); skipped
    when the application has frozen objects itself (unfreezing would thaw those)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()


class _FreeLexer:
    """The grammar's terminals as a lexer without the parser: any lexemes one after another.

    Where a token leaves a lexeme, the rest of its bytes must at least lex so: `_LexemeWalk`
    follows them here (a necessary condition, no parser: `é` after an identifier starts
    nothing, while a quote starts a string that may hold anything). A state is the set of
    lexemes that may be in progress, (terminal, DFA state), and the last byte read, interned as
    an int (0 = nothing left); transitions are built on demand. Terminals with large DFAs
    (over `EXACT_STATES`, such as an identifier excluding keywords) are widened to their
    byte-pair language, state `WIDE` (any string whose first byte may start it and whose every
    adjacent pair occurs in it; it may end where its last byte may end it), which keeps the
    sets few. Each grammar's lexer also keeps the per-lexeme splits of views that depend on
    it (`splits`, large vocabularies); the others are shared per terminal DFA (`shared`)."""

    EXACT_STATES = 64
    WIDE = -2
    #: Vocabularies below this many tokens skip the free lexer (first-byte pass only): on
    #: SmolLM2's 49k it prunes little and costs the first masks of every new grammar (JSON
    #: schemas compile one per request); Gemma-3's 262k tokens are full of word + accented
    #: letter tokens that it prunes.
    MIN_VOCAB = 100_000
    #: `_lexeme_split` walks up to this many possibly leaving tokens over a trie of their own.
    OWN_TRIE_MAX = 2000
    #: ... from this many (fewer are left to the parser: a trie of their own costs more).
    OWN_TRIE_MIN = 32
    #: Past this many states, new ones are replaced by `ANY` (anything lexes: no pruning).
    MAX_STATES = 50_000
    ANY = 1

    def __init__(self, dfas: tuple[ByteDFA, ...], prunes: bool = True,
                 follows: Callable[[], list[int]] | None = None) -> None:
        """`prunes`: whether `_lexeme_split` prunes leaving tokens with this lexer on large
        vocabularies (`CompiledGrammar.free_lexer`). `follows`: per terminal, the bytes that may
        start a lexeme after one of it (`follow_bytes`, computed on first use); without it,
        any terminal may follow any."""
        # Everything per terminal or per byte is built on first use: grammars compiled from
        # JSON schemas have hundreds of terminals, and their first mask should not pay for all.
        self.dfas = dfas
        self.prunes = prunes
        self._initial_rows = np.array([d.transitions[d.initial] for d in dfas], np.int64)
        self.starts = (self._initial_rows >= 0).any(axis=0)  # bytes some terminal starts with
        self._accepting: dict[int, set[int]] = {}
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._firsts: dict[int, frozenset[tuple[int, int]]] = {}
        self._sets: list[tuple[frozenset[tuple[int, int]], int]] = [(frozenset(), -1),
                                                                    (frozenset(), -2)]
        self._ids: dict[tuple[frozenset[tuple[int, int]], int], int] = {(frozenset(), -1): 0}
        self._ends: list[bool] = [False, True]
        self._next: dict[tuple[int, int, bool], int] = {}
        self._table = np.full(2 * 256 * 64, -1, np.int32)  # (state * 256 + byte) * 2 + restart
        self.starts_key = np.packbits(self.starts).tobytes()
        self._follows_of = follows
        self._follows: list[int] | None = None
        self._follow_starts: dict[int, tuple[np.ndarray, bytes]] = {}
        self._walks: dict[int, _LexemeWalk] = {}
        self._shared: dict[int, _SharedLexeme] = {}
        self.splits: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}

    def accepting(self, t: int) -> set[int]:
        acc = self._accepting.get(t)
        if acc is None:
            acc = self._accepting[t] = set(np.flatnonzero(self.dfas[t].accepting).tolist())
        return acc

    def _wide(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(pairs[b, c]: c may follow b in the terminal, last[b]: it may end with b)."""
        got = self._pairs.get(t)
        if got is None:
            d = self.dfas[t]
            tr = d.transitions
            entering = np.zeros((d.n_states, 256), bool)  # bytes that lead into each state
            src, byte = np.nonzero(tr >= 0)
            entering[tr[src, byte], byte] = True
            pairs = (entering.T.astype(np.float32) @ (tr >= 0).astype(np.float32)) > 0
            got = self._pairs[t] = (pairs, entering[d.accepting].any(axis=0))
        return got

    def firsts(self, c: int) -> frozenset[tuple[int, int]]:
        """The lexemes byte c starts: (terminal, DFA state, or WIDE for widened terminals)."""
        got = self._firsts.get(c)
        if got is None:
            col = self._initial_rows[:, c]
            got = self._firsts[c] = frozenset(
                (t, int(col[t]) if self.dfas[t].n_states <= self.EXACT_STATES else self.WIDE)
                for t in np.flatnonzero(col >= 0).tolist())
        return got

    def step(self, f: int, c: int, restart: bool) -> int:
        """The state after byte c from state f (`restart`: a lexeme may also start at c)."""
        key = (f, c, restart)
        nxt = self._next.get(key)
        if nxt is None:
            if f == self.ANY:
                return self.ANY
            lexemes, b = self._sets[f]
            dfas, wide = self.dfas, self.WIDE
            out = {(t, dfas[t].rows[s][c] if s != wide else wide) for t, s in lexemes
                   if (self._wide(t)[0][b, c] if s == wide else dfas[t].rows[s][c] >= 0)}
            if restart or self._ends[f]:
                out |= self.firsts(c)
            nxt = 0
            if out:
                key2 = (frozenset(out), c)
                nxt = self._ids.get(key2)
                if nxt is None and len(self._sets) >= self.MAX_STATES:
                    nxt = self.ANY
                elif nxt is None:
                    nxt = self._ids[key2] = len(self._sets)
                    self._sets.append(key2)
                    self._ends.append(any(self._wide(t)[1][c] if s == wide
                                          else s in self.accepting(t) for t, s in key2[0]))
            self._next[key] = nxt
        return nxt

    def step_many(self, f: np.ndarray, c: np.ndarray, restart: np.ndarray) -> np.ndarray:
        """`step` of each (state, byte, restart) triple, through a table built on demand."""
        flat = (f * 256 + c) * 2 + restart
        if len(self._table) <= int(flat.max()):
            grown = np.full(max(2 * len(self._table), int(flat.max()) + 1), -1, np.int32)
            grown[: len(self._table)] = self._table
            self._table = grown
        nxt = self._table[flat]
        unknown = nxt < 0
        if unknown.any():
            for key in np.unique(flat[unknown]).tolist():
                fc, r = divmod(key, 2)
                self._table[key] = self.step(*divmod(fc, 256), bool(r))
            nxt = self._table[flat]
        return nxt

    def follow_starts(self, t: int) -> tuple[np.ndarray, bytes]:
        """(bytes that may start a lexeme right after one of terminal t, packed as a key):
        where a first-byte walk may leave t's lexeme. A whitespace run of a JSON schema (at most
        32 bytes) is never followed by another, so a token of 33+ spaces is dead in it, not a
        leaving token walked byte by byte from every new state."""
        got = self._follow_starts.get(t)
        if got is None:
            if self._follows_of is None:
                got = (self.starts, self.starts_key)
            else:
                if self._follows is None:
                    self._follows = self._follows_of()
                bits = self._follows[t].to_bytes(32, "little")
                starts = np.unpackbits(np.frombuffer(bits, np.uint8), bitorder="little")
                starts = starts.astype(bool) & self.starts
                got = (starts, np.packbits(starts).tobytes())
            self._follow_starts[t] = got
        return got

    def shared(self, t: int) -> "_SharedLexeme":
        """Terminal t's first-byte walk and splits, shared with every grammar that has the
        same DFA object and start bytes after it (JSON schemas reuse string, number and key
        DFAs)."""
        got = self._shared.get(t)
        if got is None:
            dfa = self.dfas[t]
            per_starts = _SHARED_LEXEMES.get(dfa)
            if per_starts is None:
                per_starts = _SHARED_LEXEMES[dfa] = {}
            starts, key = self.follow_starts(t)
            got = per_starts.get(key)
            if got is None:
                got = per_starts[key] = _SharedLexeme(starts)
            self._shared[t] = got
        return got

    def walk(self, t: int) -> "_LexemeWalk":
        w = self._walks.get(t)
        if w is None:
            w = self._walks[t] = _LexemeWalk(self, t)
        return w


_FREE_LEXERS: "weakref.WeakKeyDictionary[CompiledGrammar, _FreeLexer]" = weakref.WeakKeyDictionary()


def _free_lexer(grammar: CompiledGrammar) -> _FreeLexer:
    lexer = _FREE_LEXERS.get(grammar)
    if lexer is None:
        lexer = _FREE_LEXERS[grammar] = _FreeLexer(grammar.terminal_dfas, grammar.free_lexer,
                                                   lambda: follow_bytes(grammar))
    return lexer


class _LexemeWalk:
    """Walk source for one terminal's DFA that also follows, in the free lexer, the ways a
    token's bytes could leave the lexeme (end it after at least one byte, then go on in other
    lexemes). State: (DFA state or -1 once dead, free-lexer state, whether a byte was read),
    interned as ints, 0 = the sink (dead, and no way out lexes). A token ending in a live DFA
    state stays inside the lexeme; one ending dead but with a free-lexer state left needs the
    parser; the others can never be read from here. Transitions are built on demand, a batch
    of (state, byte) pairs at a time."""

    sink = 0
    #: Past this many states, new ones forget their free-lexer state (`_FreeLexer.ANY`).
    MAX_STATES = 200_000

    def __init__(self, lexer: _FreeLexer, t: int) -> None:
        self.lexer = lexer
        dfa = lexer.dfas[t]
        self.transitions = np.vstack([dfa.transitions, np.full((1, 256), -1)]).astype(np.int64)
        self.accepting = np.append(dfa.accepting, False)  # (row -1: dead)
        self._ids: dict[tuple[int, int, bool], int] = {(-1, 0, True): 0}
        self.dfa_state = np.full(64, -1, np.int64)  # per walk state
        self.free = np.zeros(64, np.int64)
        self.read = np.ones(64, bool)
        self._n = 1
        self._table = np.full(64 * 256, -1, np.int32)
        self._table[:256] = 0

    def state(self, s: int) -> int:
        """The walk state of a lexeme in DFA state s, before any byte."""
        return self._intern(s, 0, False)

    def _intern(self, s: int, free: int, read: bool) -> int:
        k = self._ids.get((s, free, read))
        if k is None:
            if self._n >= self.MAX_STATES and free != 0:
                free = self.lexer.ANY
                k = self._ids.get((s, free, read))
                if k is not None:
                    return k
            k = self._ids[(s, free, read)] = self._n
            self._n += 1
            if k >= len(self.dfa_state):
                n = len(self.dfa_state)
                self.dfa_state = np.concatenate([self.dfa_state, np.full(n, -1, np.int64)])
                self.free = np.concatenate([self.free, np.zeros(n, np.int64)])
                self.read = np.concatenate([self.read, np.ones(n, bool)])
                self._table = np.concatenate([self._table, np.full(256 * n, -1, np.int32)])
            self.dfa_state[k], self.free[k], self.read[k] = s, free, read
        return k

    def step(self, states: np.ndarray, data: np.ndarray) -> np.ndarray:
        flat = states * 256 + data
        nxt = self._table[flat]
        unknown = nxt < 0
        if unknown.any():
            pairs = np.unique(flat[unknown])
            k, b = pairs // 256, pairs % 256
            s = self.dfa_state[k]
            s2 = self.transitions[s, b]
            restart = (s >= 0) & self.read[k] & self.accepting[s]
            free = self.free[k]
            free2 = np.zeros(len(pairs), np.int64)
            moves = (free != 0) | restart
            if moves.any():
                free2[moves] = self.lexer.step_many(free[moves], b[moves], restart[moves])
            keys = (s2 + 1) * (2**32) + free2
            uniq, inverse = np.unique(keys, return_inverse=True)
            ids = [0 if key == 0 else self._intern(key // 2**32 - 1, key % 2**32, True)
                   for key in uniq.tolist()]
            self._table[pairs] = np.asarray(ids, np.int32)[inverse.reshape(-1)]
            nxt = self._table[flat]
        return nxt


@dataclass(eq=False)
class _View:
    """The tokens that start with `prefix` and go on past it, as a trie of their bytes after
    the prefix. Below a trie node, a state's allowed tokens are a mask of their own over this
    view (from the state after the prefix), so masks can recurse into the subtrees holding most
    of a shape's leaving tokens (`_ShapeSplit.deeper`). Splits of a view are computed over its
    own tokens (`ids`, sorted; "local" indices index it), not the whole vocabulary. The root
    view is `dense`: its local index is the token id itself (over the logits width, specials
    included, which no split holds), so its split rows are mask rows as they stand."""

    prefix: bytes
    key: tuple[str, bytes]  # (vocabulary fingerprint, prefix): names the view in split caches
    trie: TokenTrie
    ids: np.ndarray  # int64, sorted: the view's token ids
    next_byte: np.ndarray  # int64, per local index: the first byte after the prefix
    children: dict[int, "_View"]
    dense: bool = False

    @classmethod
    def of(cls, prefix: bytes, key: str, trie: TokenTrie) -> "_View":
        """The view of `trie` (the bytes after `prefix`), with each token's next byte: the byte
        of its ancestor on the trie's first level."""
        tokens, firsts = [], []
        if trie.levels:
            top = trie.levels[0].byte
            below = np.arange(len(top))  # each node's ancestor among the first bytes
            for d, level in enumerate(trie.levels):
                below = below[level.parent] if d else below
                tokens.append(level.tokens)
                firsts.append(top[below[level.token_node]])
        ids = np.concatenate(tokens) if tokens else np.empty(0, np.int64)
        order = np.argsort(ids)
        next_byte = np.concatenate(firsts)[order] if firsts else np.empty(0, np.int64)
        return cls(prefix, (key, prefix), trie, ids[order], next_byte, {})

    @cached_property
    def local_trie(self) -> TokenTrie:
        """The view's trie with each token's local index in place of its id: first-byte walks
        over it give local indices directly (mapping ~200k ids back cost ~130 µs per walk on
        Gemma-3's root view)."""
        return self.trie if self.dense else self.trie.relabelled(self.local)

    def local(self, ids: np.ndarray) -> np.ndarray:
        """Local indices of these ids of the view."""
        return ids if self.dense else np.searchsorted(self.ids, ids)

    def child(self, b: int) -> "_View":
        """The view of prefix + b (built on first use, kept with its parent)."""
        view = self.children.get(b)
        if view is None:
            view = self.children[b] = _View.of(self.prefix + bytes([b]), self.key[0],
                                               self.trie.below(b))
        return view


_ROOT_VIEWS: dict[str, _View] = {}


def _root_view(vocab: Vocabulary) -> _View:
    """The whole vocabulary as the (dense) view of the empty prefix."""
    view = _ROOT_VIEWS.get(vocab.fingerprint)
    if view is None:
        sparse = _View.of(b"", vocab.fingerprint, trie_for(vocab))
        next_byte = np.zeros(vocab.width, np.int64)
        next_byte[sparse.ids] = sparse.next_byte
        view = _ROOT_VIEWS[vocab.fingerprint] = _View(
            b"", sparse.key, sparse.trie, np.arange(vocab.width), next_byte, {}, dense=True)
    return view


class _FirstByteWalk:
    """Walk source for one terminal DFA that also remembers whether the lexeme could have
    ended with a token's next byte starting another lexeme (a byte in `starts`, the first bytes
    of the terminals that may follow it): the quick first pass of `_lexeme_split`. State =
    3 * dfa_state + phase: 0 before any byte, 1 after some, 2 once it could have ended so;
    dfa_state n = dead. (dead, 2) continues forever: the token may leave the lexeme. A token
    that dies without that never had a way out. Walked compiled from the DFA itself (`split`);
    `step` reads a table built on first use."""

    def __init__(self, dfa: ByteDFA, starts: np.ndarray) -> None:
        n = self.n = dfa.n_states
        self.sink = 3 * n + 1
        self.absorbing = 3 * n + 2
        # (the arrays, not the DFA: shared lexemes must not keep their weak key alive)
        self.transitions, self.accepting = dfa.transitions, dfa.accepting
        self.starts = starts
        self._compiled: tuple[tuple[np.ndarray, ...], tuple[int, ...]] | None = None

    def split(self, trie: TokenTrie, state: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens of `trie` read inside the DFA from DFA state `state`, tokens that may leave
        it), by a walk compiled when it can be, its next states computed from the DFA as it
        goes: key DFAs are new with every schema, and a table built first (3 KB per state,
        written to fresh memory) cost more than the walks of their first masks."""
        if not native.available():
            local, ends = trie.walk(self, 3 * state)
            inside = ends // 3 < self.n
            return local[inside], local[~inside]
        return trie.preorder().first_byte_split(self.addresses, 3 * state)

    @property
    def addresses(self) -> tuple[int, int, int, int]:
        """(transitions, accepting, start bytes, n) as the compiled walks take them."""
        if self._compiled is None:  # (the arrays the kernels read, held, and their addresses)
            arrays = (np.ascontiguousarray(self.transitions, np.int32),
                      np.ascontiguousarray(self.accepting, np.uint8),
                      np.ascontiguousarray(self.starts, np.uint8))
            self._compiled = arrays, (*(a.ctypes.data for a in arrays), self.n)
        return self._compiled[1]

    def first_step(self, state: int, data: np.ndarray) -> np.ndarray:
        """`step` from walk state 3 * state (before any byte) on each byte of `data`, read off
        the DFA's row: phase 0 goes to phase 1 whatever the byte."""
        t = self.transitions[state, data]
        return 3 * np.where(t < 0, self.n, t) + 1

    @cached_property
    def _table(self) -> np.ndarray:
        """Row 3 * s + phase (flat, 256 entries a row), built with whole-array steps on first
        use: only `step` reads it (proofs by `_same_walk`, and walks, where the compiled
        kernels are not used)."""
        n, starts = self.n, self.starts
        table = np.empty((n + 1, 3, 256), np.int32)  # (int64: 62 MB at 10k states)
        base = table[:n, 0]
        np.multiply(self.transitions, 3, out=base)  # 3 * next state...
        np.putmask(base, self.transitions < 0, 3 * n)  # ...dead = n
        np.add(base, 2, out=table[:n, 2])
        np.add(base, 1, out=table[:n, 1])
        table[np.flatnonzero(self.accepting), 1] += starts.astype(np.int32)  # could end
        base += 1
        table[n, :2] = 3 * n + 1  # dead, no way out: the sink
        table[n, 2] = 3 * n + 2
        return table.ravel()

    def step(self, states: np.ndarray, data: np.ndarray) -> np.ndarray:
        return self._table[states * 256 + data]

    def token_class(self, states: np.ndarray) -> np.ndarray:
        """A token's class after its walk ends in these states: -1 inside (a live DFA state),
        1 dead (the sink), 2 could leave (absorbing)."""
        live = 3 * self.n
        return np.where(states < live, -1, states - live)


class _Bisimilar:
    """Which walk states of two DFAs' first-byte walks (under the same start bytes) are alike:
    both the sink, both absorbing, or the same phase with language-equivalent DFA states —
    then every token walks to the same class from either. Lets a split of one DFA stand for
    another's: the key DFAs of different schemas ("a string that is none of these keys")
    are all plain string content past their key prefixes."""

    #: Product states explored per question; past it the answer is "not known alike" (sound:
    #: a proof then only follows both walks further).
    LIMIT = 64
    #: Pairs of DFAs with up to this many state pairs are compared compiled, when it can be.
    COMPILED_PAIRS = 1 << 22

    def __init__(self, a: _FirstByteWalk, b: _FirstByteWalk) -> None:
        self.a, self.b = a, b
        self._equivalent: dict[tuple[int, int], bool] = {}
        self._alike: dict[int, bool] = {}  # by x * (walk states of b) + y
        # The same search compiled (`native`: ~5x), set up on the first question; not for
        # pairs of DFAs so large that its verdict table (a byte per state pair) would not pay.
        self._compiled: native.EquivalenceSearch | None | bool = False

    def search(self) -> native.EquivalenceSearch | None:
        """The compiled equivalence search (set up on first use), None where it is not used."""
        compiled = self._compiled
        if compiled is False:
            small = self.a.n * self.b.n <= self.COMPILED_PAIRS and native.available()
            compiled = self._compiled = native.EquivalenceSearch(
                (self.a.transitions, self.a.accepting), (self.b.transitions, self.b.accepting),
                self.LIMIT) if small else None
        return compiled

    def alike(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per position, whether walk state x[i] of `a` is alike walk state y[i] of `b`."""
        known = self._alike
        keys = (x.astype(np.int64) * (3 * self.b.n + 3) + y).tolist()
        out = [known.get(key) for key in keys]
        if None in out:
            live_a, live_b = 3 * self.a.n, 3 * self.b.n
            for i, verdict in enumerate(out):
                if verdict is None:
                    xi, yi = int(x[i]), int(y[i])
                    if xi >= live_a or yi >= live_b:
                        verdict = xi - live_a == yi - live_b
                    else:
                        verdict = xi % 3 == yi % 3 and self.equivalent(xi // 3, yi // 3)
                    out[i] = known[keys[i]] = verdict
        return np.array(out, bool)

    def equivalent(self, p: int, q: int) -> bool:
        """Whether DFA state p of `a` and q of `b` accept the same strings: the product closure
        from (p, q) agrees everywhere on acceptance and on the bytes with a way on (both DFAs
        are trimmed: a byte has a way on iff it has a transition)."""
        compiled = self.search()
        if compiled is not None:
            return compiled(p, q)
        known = self._equivalent.get((p, q))
        if known is not None:
            return known
        ta, tb = self.a.transitions, self.b.transitions
        acc_a, acc_b = self.a.accepting, self.b.accepting
        width = 3 * self.b.n + 3  # pairs packed as one int while deduplicated
        seen = {(p, q)}
        todo = [(p, q)]
        while todo:
            p1, q1 = todo.pop()
            if self._equivalent.get((p1, q1)):
                continue
            row_a, row_b = ta[p1], tb[q1]
            on = row_a >= 0
            if (len(seen) > self.LIMIT or self._equivalent.get((p1, q1)) is False
                    or acc_a[p1] != acc_b[q1] or (on != (row_b >= 0)).any()):
                self._equivalent[(p, q)] = False
                return False
            for key in set((row_a[on].astype(np.int64) * width + row_b[on]).tolist()):
                pair = divmod(key, width)
                if pair not in seen:
                    seen.add(pair)
                    todo.append(pair)
        self._equivalent.update(dict.fromkeys(seen, True))
        return True


#: A shape's lexemes whose splits are not known yet and that read few first bytes (fewer
#: than this: a key position's key literals, up to hundreds of them) are walked together
#: (`Preorder.first_byte_splits`), at least `BATCH_MIN` of them; one by one each cost ~25 µs,
#: mostly calls around a walk of the same few trie nodes. The others may have large splits,
#: which references serve (`_SharedLexeme.split`).
BATCH_FIRST_BYTES = 32
BATCH_MIN = 4


def _batch_lexeme_splits(lexer: _FreeLexer, shape: tuple[tuple[int, int], ...],
                         view: _View) -> None:
    """Compute the missing first-byte splits of `shape`'s small lexemes in one walk."""
    if not native.available():
        return
    todo: dict[tuple[int, int], tuple[_SharedLexeme, int, int]] = {}
    for t, s in shape:
        shared = lexer.shared(t)
        if (s, view.key) in shared.splits or (id(shared), s) in todo:
            continue
        if np.count_nonzero(lexer.dfas[t].transitions[s] >= 0) < BATCH_FIRST_BYTES:
            todo[(id(shared), s)] = (shared, t, s)
    if len(todo) < BATCH_MIN:
        return
    jobs = list(todo.values())
    splits = view.local_trie.preorder().first_byte_splits(
        [shared.quick(lexer.dfas[t]).addresses for shared, t, _ in jobs],
        [3 * s for _, _, s in jobs])
    for (shared, _, s), split in zip(jobs, splits or ()):
        shared.keep((s, view.key), split)


def _lexeme_split(lexer: _FreeLexer, t: int, state: int, view: _View,
                  vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(tokens whose bytes after the view's prefix are read entirely inside terminal t's DFA
    from `state`, tokens that die in it after it could end, the rest still lexing), as local
    indices of the view. A first pass over the view finds the tokens inside and those that
    could leave (the lexeme could end before a byte that starts a terminal that may follow
    t): it depends only on the DFA and those bytes, so it is cached across grammars
    (`_SharedLexeme`). On large vocabularies the possible leavers are then walked through the
    free lexer, per grammar."""
    shared = lexer.shared(t)
    first = shared.splits.get((state, view.key))
    if first is None:
        first = shared.keep((state, view.key), shared.split(lexer.dfas[t], state, view))
    if vocab.width < lexer.MIN_VOCAB or not lexer.prunes:
        return first
    key = (t, state, view.key)
    split = lexer.splits.get(key)
    if split is None:
        candidates = view.ids[first[1]]
        if len(candidates) > lexer.OWN_TRIE_MAX:  # many: walk the view again, through both
            source = lexer.walk(t)
            all_ids, ends = view.trie.walk(source, source.state(state))
            candidates = all_ids[source.dfa_state[ends] < 0]
        elif len(candidates) >= lexer.OWN_TRIE_MIN:  # fewer: over a trie of their own
            source = lexer.walk(t)
            trie = _leaving_trie(vocab, view, np.sort(candidates))
            candidates = trie.walk(source, source.state(state))[0]
        split = lexer.splits[key] = (first[0], view.local(candidates))
    return split


class _SharedLexeme:
    """What `_lexeme_split` needs of one terminal DFA under one set of follow bytes:
    its first-byte walk (built on first use) and its splits by (DFA state, view key)."""

    #: Bytes of the distinct arrays of live splits (of all DFAs) before every shared lexeme's
    #: splits are dropped. Each array counts once, until it is freed: the states of a key
    #: DFA proved to share a reference's split hold the same arrays, and splits of schemas
    #: long gone hold none. (A bound that counted every split kept and never gave back,
    #: 2 MB per plain-string state on Gemma-3, dropped everything 11 times in MaskBench
    #: `--limit 5`'s 105 schemas: each drop re-walked plain string content at ~4 ms a state
    #: and lost the references other DFAs prove their splits against.)
    MAX_BYTES = 256 * 2**20
    held_bytes = 0
    #: Bytes still held right after the last drop (arrays that grammars' own caches hold):
    #: the bound applies above them, so that a drop that frees little does not repeat at
    #: every split kept.
    pinned_bytes = 0

    def __init__(self, starts: np.ndarray) -> None:
        # No reference to the DFA: it is this entry's weak key.
        self.starts = starts
        self.starts_key = np.packbits(starts).tobytes()
        self._quick: _FirstByteWalk | None = None
        self.splits: dict[tuple[int, tuple[str, bytes]], tuple[np.ndarray, np.ndarray]] = {}
        # per view: [spread, state, split, one-byte tokens read] (see `_spread`, `_one_byte`)
        self._references: dict[tuple[str, bytes], list[list]] = {}
        self._proofs: dict[tuple[str, bytes], list[int]] = {}
        self._bisimilar: dict[_SharedLexeme, _Bisimilar] = {}

    #: Splits with at least this many inside tokens are kept (per view, the last few) as
    #: references that later DFA states try first (`_same_walk`); the last few of all DFAs
    #: under the same start bytes are tried next (`_REFERENCES`).
    REFERENCE_MIN = 1024
    REFERENCES = 3
    #: Other DFAs' references are tried for a state that reads at least this many one-byte
    #: tokens inside (its split will be large: on MaskBench `--limit 5`, SmolLM2, 1,655 of
    #: 1,656 such splits held 1,024+ inside tokens, 2 of 7,739 others did). A failed proof
    #: costs up to `DIFF_BUDGET` node visits; a large split's walk ~0.85 ms on SmolLM2.
    ACROSS_INSIDE = 32
    #: Node groups a proof across DFAs may follow (each costs ~0.4 ms there).
    ACROSS_BUDGET = 12

    def keep(self, key: tuple[int, tuple[str, bytes]], split: tuple[np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
        """Hold `split` as this DFA's split by (state, view key); past `MAX_BYTES`, every shared
        lexeme's splits are dropped (rebuilt on demand)."""
        new = [part for part in split if id(part) not in _COUNTED]
        size = sum(part.nbytes for part in new)
        # (pinned arrays freed since then lower the pin with them)
        _SharedLexeme.pinned_bytes = min(_SharedLexeme.pinned_bytes, _SharedLexeme.held_bytes)
        if _SharedLexeme.held_bytes + size > _SharedLexeme.MAX_BYTES + _SharedLexeme.pinned_bytes:
            _REFERENCES.clear()
            for per_starts in list(_SHARED_LEXEMES.values()):
                for shared in per_starts.values():
                    shared._drop()
            _SharedLexeme.pinned_bytes = _SharedLexeme.held_bytes
        self.splits[key] = split
        for part in new:
            _COUNTED[id(part)] = weakref.ref(part, _uncount(_COUNTED, id(part), part.nbytes))
        _SharedLexeme.held_bytes += size
        return split

    def _drop(self) -> None:
        """Let go of every split (and the references and pairings that hold splits or other
        DFAs' lexemes)."""
        self.splits.clear()
        self._references.clear()
        self._bisimilar.clear()

    def quick(self, dfa: ByteDFA) -> _FirstByteWalk:
        if self._quick is None:
            self._quick = _FirstByteWalk(dfa, self.starts)
        return self._quick

    def split(self, dfa: ByteDFA, state: int, view: _View) -> tuple[np.ndarray, np.ndarray]:
        """(inside, could leave) local indices of the view from DFA state `state`. A state
        whose walk provably classifies every token as a reference state's does takes its
        split: many states met along a generation (in a string that must not spell some
        keys, say) differ from plain string content only on strings no token holds; and the
        key DFAs of other schemas hold such states too."""
        quick = self.quick(dfa)
        trie = view.local_trie
        refs = self._references.setdefault(view.key, [])
        record = self._proofs.setdefault(view.key, [0, 0])  # [proofs given up, proved]
        shared = _REFERENCES.get((self.starts_key, view.key), [])
        ones = None
        # Long proofs that rarely hold (identifiers that exclude keywords, say) stop being tried.
        trying: list[tuple[list, _Bisimilar | None]] = []
        if (refs or shared) and (record[0] < 8 or record[0] <= 4 * record[1]):
            # Only references that read the same one-byte tokens can have this state's split.
            ones = self._one_byte(quick, state, trie)
            trying = [(ref, None) for ref in refs if ref[3] == ones]
            if shared and ones.count(1) >= self.ACROSS_INSIDE:
                trying += [(ref, self._across(owner))
                           for owner, ref in sorted(shared, key=lambda e: e[1][0])
                           if owner is not self and ref[3] == ones]
        patch: tuple[list, np.ndarray] | None = None  # (reference, rows) fewest tokens differ
        for ref, across in trying:
            rows = self._differences(quick, state, ref, view, across)
            if rows is None:
                record[0] += 1
            elif rows is not False and len(rows):
                if patch is None or _row_tokens(rows) < _row_tokens(patch[1]):
                    patch = ref, rows
            elif rows is not False:
                record[1] += 1
                # The best reference of a split leads to few states after the first byte:
                # proofs against it end where the two walks meet (one with many successors,
                # such as the start of a key that may begin many ways, makes every proof
                # follow each of its paths).
                spread = self._spread(quick, state, trie)
                if across is not None:  # this DFA's own reference from now on: cheaper proofs
                    self._refer(view.key, [spread, state, ref[2], ones])
                elif spread < ref[0]:
                    ref[0], ref[1] = spread, state
                return ref[2]
        if patch is not None:  # no reference's split is this state's, one differs in few tokens
            record[1] += 1
            split = _patched(patch[0][2], patch[1], trie.preorder().tokens, len(view.ids))
        else:
            split = quick.split(trie, state)
        if len(split[0]) >= self.REFERENCE_MIN:
            self._refer(view.key, [self._spread(quick, state, trie), state, split,
                                   self._one_byte(quick, state, trie) if ones is None else ones])
        return split

    #: Trie nodes a compiled proof may visit (where the two walks are not alike) before it
    #: gives up (~10 ns each).
    DIFF_BUDGET = 1 << 14

    def _differences(self, quick: _FirstByteWalk, state: int, ref: list, view: _View,
                     across: _Bisimilar | None) -> np.ndarray | bool | None:
        """Where the walk from DFA state `state` classifies tokens otherwise than a reference's
        (`ref`, of this DFA or, `across`, of another's): compiled, (first, end, class) rows of
        token ranges found by walking both only below the nodes where their states are not
        alike (a string DFA that excludes other keys than the reference's differs on ~80 of
        Gemma-3's 255k tokens inside), kept only where they are fewer than half its tokens
        (else False: a walk costs less than a patch); else by `_same_walk` (no rows where
        alike, False where not). None: not known (past the budget)."""
        trie = view.local_trie
        search = None if across is None else across.search()
        if not native.available() or (across is not None and search is None):
            same = _same_walk(quick, 3 * state, 3 * ref[1], trie,
                              budget=32 if across is None else self.ACROSS_BUDGET, across=across)
            return _NO_ROWS if same else same
        other = quick if across is None else across.b
        rows = trie.preorder().first_byte_diff(quick.addresses, other.addresses,
                                               None if search is None else search.addresses,
                                               3 * state, 3 * ref[1], self.DIFF_BUDGET)
        if rows is not None and 2 * _row_tokens(rows) > len(ref[2][0]) + len(ref[2][1]):
            return False
        return rows

    def _refer(self, view_key: tuple[str, bytes], ref: list) -> None:
        """Keep `ref` as this DFA's newest reference in the view, and among all DFAs' (the
        same list object: a swap to a better state shows in both)."""
        refs = self._references[view_key]
        refs.insert(0, ref)
        del refs[self.REFERENCES:]
        if len(_REFERENCES) >= _REFERENCES_MAX:
            _REFERENCES.clear()
        shared = _REFERENCES.setdefault((self.starts_key, view_key), [])
        shared.insert(0, (self, ref))
        del shared[self.REFERENCES:]

    def _across(self, owner: _SharedLexeme) -> _Bisimilar:
        """The pairing of this DFA's walk with another's (kept for a few DFAs at a time)."""
        got = self._bisimilar.get(owner)
        if got is None:
            if len(self._bisimilar) >= 2 * self.REFERENCES:
                self._bisimilar.clear()
            assert self._quick is not None and owner._quick is not None
            got = self._bisimilar[owner] = _Bisimilar(self._quick, owner._quick)
        return got

    @staticmethod
    def _one_byte(quick: _FirstByteWalk, state: int, trie: TokenTrie) -> bytes:
        """Which of the trie's one-byte tokens the DFA reads from `state` (one byte each, 1 =
        inside, else dead: after one byte a token cannot have left): a reference whose split
        could be this state's reads the same ones (a proof against another costs ~25 µs to
        fail; this, ~3 µs)."""
        top = trie.levels[0]
        return (quick.transitions[state][top.byte[top.token_count > 0]] >= 0).tobytes()

    @staticmethod
    def _spread(quick: _FirstByteWalk, state: int, trie: TokenTrie) -> int:
        """How many walk states the trie's first bytes lead to from DFA state `state` (the
        best reference of a split has few: see `split`)."""
        return len(set(quick.first_step(state, trie.levels[0].byte).tolist()))


_NO_ROWS = np.empty((0, 3), np.int64)


#: The split arrays counted in `_SharedLexeme.held_bytes`, by id, until each is freed.
_COUNTED: dict[int, weakref.ref] = {}


def _uncount(counted: dict[int, weakref.ref], key: int, size: int
             ) -> Callable[[weakref.ref], None]:
    """The callback that gives an array's bytes back when it is freed (binding what it needs:
    arrays freed at interpreter exit may outlive the module's globals)."""
    owner = _SharedLexeme

    def freed(_: weakref.ref) -> None:
        counted.pop(key, None)
        owner.held_bytes -= size
    return freed


def _row_tokens(rows: np.ndarray) -> int:
    """How many tokens `first_byte_diff`'s rows cover."""
    return int((rows[:, 1] - rows[:, 0]).sum())


def _patched(split: tuple[np.ndarray, np.ndarray], rows: np.ndarray, tokens: np.ndarray,
             n: int) -> tuple[np.ndarray, np.ndarray]:
    """A reference's split with the tokens of `first_byte_diff`'s rows (ranges of `tokens`, the
    view's n local indices in trie order) moved to their own class."""
    counts = rows[:, 1] - rows[:, 0]
    ids = tokens[expand_ranges(rows[:, 0], counts)]
    classes = np.repeat(rows[:, 2], counts)
    differs = np.zeros(n, bool)
    differs[ids] = True
    inside, leaving = split
    return (np.concatenate([inside[~differs[inside]], ids[classes == 0]]),
            np.concatenate([leaving[~differs[leaving]], ids[classes == 2]]))


def _same_walk(quick: _FirstByteWalk, x: int, y: int, trie: TokenTrie, budget: int = 32,
               across: _Bisimilar | None = None) -> bool | None:
    """Whether walking `trie` from walk states x and y gives every token the same class (inside,
    could leave, dead), proved by following the two walks together only below the nodes where
    their states differ (equal states have equal subtrees). None (unknown) past `budget` such
    node groups: breadth first, so that short tokens, where walks that differ mostly show it,
    come first (on MaskBench 96 % of the proofs need at most 16 groups). With `across`, y is
    a state of another DFA's walk (`across.b`; `quick` is `across.a`), and states differ unless
    they are alike."""
    other = quick if across is None else across.b
    levels = trie.levels
    if not levels:
        return True
    todo = deque([(x, y, 0, 0, len(levels[0].byte))])
    while todo:
        budget -= 1
        if budget < 0:
            return None
        x, y, d, lo, hi = todo.popleft()
        level = levels[d]
        data = level.byte[lo:hi]
        nx, ny = quick.step(x, data), other.step(y, data)
        if across is None:  # equal states walk alike
            keep = np.flatnonzero(nx != ny)
            nx, ny, nodes = nx[keep], ny[keep], keep + lo
        else:
            nodes = np.arange(lo, hi)
        if ((quick.token_class(nx) != other.token_class(ny))
                & (level.token_count[nodes] > 0)).any():
            return False
        if across is not None:  # (classes first: alike states cost more to find)
            keep = np.flatnonzero(~across.alike(nx, ny))
            nx, ny, nodes = nx[keep], ny[keep], nodes[keep]
        if not len(nodes):
            continue
        if d + 1 < len(levels):
            counts = level.child_count[nodes]
            starts = level.child_start[nodes]
            for i in np.flatnonzero(counts).tolist():
                todo.append((int(nx[i]), int(ny[i]), d + 1, int(starts[i]),
                             int(starts[i] + counts[i])))
    return True


#: References of all DFAs per (packed start bytes, view key): (owner, its reference list).
_REFERENCES: dict[tuple[bytes, tuple[str, bytes]], list[tuple[_SharedLexeme, list]]] = {}
_REFERENCES_MAX = 1024

#: Per terminal DFA object (weakly: compiled DFAs are cached by the schema compiler, and go
#: with it), per packed start bytes.
_SHARED_LEXEMES: "weakref.WeakKeyDictionary[ByteDFA, dict[bytes, _SharedLexeme]]" = (
    weakref.WeakKeyDictionary())


_LEAVING_TRIES: dict[tuple[tuple[str, bytes], bytes], TokenTrie] = {}
_LEAVING_TRIES_MAX = 4096


def _leaving_trie(vocab: Vocabulary, view: _View, ids: np.ndarray) -> TokenTrie:
    """The trie of these tokens of `view` (their bytes after its prefix). Shared: automata of
    one grammar (and grammars sharing terminals) meet the same leaving sets."""
    key = (view.key, ids.tobytes())
    trie = _LEAVING_TRIES.get(key)
    if trie is None:
        if len(_LEAVING_TRIES) >= _LEAVING_TRIES_MAX:
            _LEAVING_TRIES.clear()
        cut = len(view.prefix)
        only = ids.tolist()
        trie = _LEAVING_TRIES[key] = TokenTrie({i: vocab.token_bytes[i][cut:] for i in only},
                                               only=only)
    return trie


#: Bool rows of large per-lexeme inside sets, by the identity of the index array each was
#: built from (held here, so that id cannot be reused): shapes OR them instead of scattering
#: ~250k indices per new shape (a new key-prefix state of a JSON key, say, on Gemma-3).
_INSIDE_ROWS: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_INSIDE_ROWS_MAX = 64


def _inside_union(parts: list[np.ndarray], n: int) -> np.ndarray:
    """Bool row over n local indices of the union of `parts` (index arrays). A lone large part
    gets its cached row itself: callers must not modify the result."""
    parts = sorted(parts, key=len, reverse=True)
    row = None
    if parts and 16 * len(parts[0]) >= n:
        row = _large_row(parts[0], n)
        parts = parts[1:]
        if not parts:
            return row
        row = row.copy()
    if row is None:
        row = np.zeros(n, bool)
    for part in parts:
        if 16 * len(part) >= n:
            row |= _large_row(part, n)
        else:
            row[part] = True
    return row


def _large_row(part: np.ndarray, n: int) -> np.ndarray:
    held = _INSIDE_ROWS.get(id(part))
    if held is None:
        if len(_INSIDE_ROWS) >= _INSIDE_ROWS_MAX:
            _INSIDE_ROWS.clear()
        row = np.zeros(n, bool)
        row[part] = True
        held = _INSIDE_ROWS[id(part)] = (part, row)
    return held[1]


def _sorted_union(parts: list[np.ndarray], n: int) -> np.ndarray:
    """The distinct indices of `parts` (below n), sorted: by sorting when they are few, else
    through a bool row (sorting 7k indices costs more than a pass over 262k bools)."""
    if not parts:
        return np.empty(0, np.int64)
    joined = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if 64 * len(joined) >= n:
        row = np.zeros(n, bool)
        row[joined] = True
        return np.flatnonzero(row)
    joined = np.sort(joined)
    if len(parts) > 1 and len(joined) > 1:
        joined = joined[np.concatenate(([True], joined[1:] != joined[:-1]))]
    return joined


@dataclass(frozen=True, eq=False)
class _ShapeSplit:
    """Mask parts shared by all states of one shape, within one view. `inside` tokens are
    allowed outright. The leaving tokens are checked per state: those whose next byte is in
    `deeper` (many of them: whitespace leaves into almost anything) in the view of prefix + that
    byte, from the state after it; the others by walking their own small trie (`leaving`)."""

    view: _View
    local: np.ndarray  # bool over the view's local indices: inside (read-only: may be shared)
    leaving: TokenTrie | None
    deeper: tuple[int, ...]
    width: int
    masks: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)  # see `mask`

    @cached_property
    def inside(self) -> np.ndarray:
        """The inside tokens' ids."""
        return self.view.ids[np.flatnonzero(self.local)]

    @cached_property
    def n_inside(self) -> int:
        return int(np.count_nonzero(self.local))

    @cached_property
    def inside_row(self) -> np.ndarray:
        """The inside tokens as a bool row of the logits width: masks start from (or OR in)
        it. The root view's rows are such rows already."""
        if self.view.dense:
            return self.local
        row = np.zeros(self.width, bool)
        row[self.inside] = True
        return row

    #: Masks kept per split (by walked ids and EOS): states of one shape often allow the same
    #: few leaving tokens too.
    MASKS_PER_SPLIT = 8

    def mask(self, eos: np.ndarray | None, walked: tuple[np.ndarray, ...]
             ) -> tuple[torch.Tensor, int]:
        """(the mask of a state whose parts are this split's inside tokens and the `walked`
        leaving ids, with `eos` allowed too when given; bytes newly held). Built once per
        split, walked ids and EOS, and shared by all such states (masks are read-only; a fresh
        copy of a 262k-token row cost more than the rest of such a mask)."""
        masks = self.masks
        key = (eos is not None, *(ids.tobytes() for ids in walked))
        mask = masks.get(key)
        if mask is not None:
            return mask, 0
        row = self.inside_row
        if eos is not None or walked:
            row = row.copy()
            for ids in walked:
                row[ids] = True
            if eos is not None:
                row[eos] = True
        if len(masks) >= self.MASKS_PER_SPLIT:
            masks.clear()
        mask = masks[key] = torch.from_numpy(row)
        return mask, row.nbytes if row is not self.inside_row else 0


#: Shape splits across automata, least recently used first: by the shape's (terminal DFA, DFA
#: state, follow bytes) triples, the view, the grammar's free lexer where that prunes, and the
#: view settings. Schemas start alike
#: (whitespace, then `{`), so a new schema's first mask finds its start state's split here
#: (Gemma-3 MaskBench: first mask median 0.74 -> 0.39 ms). Each holds a view-wide bool row
#: and a few masks (Gemma-3's root view: ~0.3 MB per row).
_SHAPE_SPLITS: "OrderedDict[tuple, _ShapeSplit]" = OrderedDict()
_SHAPE_SPLITS_MAX = 32


#: Per byte, the (terminal, DFA state) pairs of the lexemes starting with it: only the bytes
#: that start something (read with `.get(b, ())`).
_Starts = dict[int, tuple[tuple[int, int], ...]]


class _Alternatives:
    """The lexemes that may read a state's next byte: those in progress (`progress`: the
    state's own lexemes, BOUNDARY left out), and, where some lexeme may end, those starting at
    the Earley set `here` (`starts.get(b)`: the (terminal, DFA state) pairs that start with byte
    b, shared by all sets expecting the same terminals). Slots, and no containers of its own
    beyond the matrix: one per expanded grammar state, so few objects for the cyclic GC."""

    __slots__ = ("progress", "here", "starts", "starting", "dfas", "_matrix")

    def __init__(self, progress: frozenset[Lexeme] | tuple[Lexeme, ...],
                 here: ParserState | None, starts: _Starts | None,
                 starting: tuple[int, ...], dfas: tuple[ByteDFA, ...]) -> None:
        self.progress = progress
        self.here = here
        self.starts = starts
        self.starting = starting  # the terminals starting at `here`, sorted
        self.dfas = dfas
        self._matrix: np.ndarray | None = None

    def tags(self) -> Iterator[tuple[int, ParserState]]:
        """(terminal, origin) of every alternative: in progress, then starting."""
        for t, _, o in self.progress:
            yield t, o
        for t in self.starting:
            yield t, self.here

    def moves(self) -> list[tuple[int, list[int], ParserState]]:
        """(terminal, DFA row, origin) of every lexeme in progress."""
        dfas = self.dfas
        return [(t, dfas[t].rows[s], o) for t, s, o in self.progress]

    @property
    def rows(self) -> list[list[int]]:
        """The DFA row of every alternative (as `tags`)."""
        return [row for _, row, _ in self.moves()] + [
            self.dfas[t].rows[self.dfas[t].initial] for t in self.starting]

    @property
    def matrix(self) -> np.ndarray:
        """The rows stacked (one per alternative), for vectorised fills of many bytes."""
        if self._matrix is None:
            self._matrix = np.array(self.rows, np.int32)
        return self._matrix


@dataclass
class MaskProfile:
    """Where fresh-mask time goes (seconds, cumulative): the trie walk itself, building rows of
    new grammar states from terminal DFA rows (the lexer's part), and within those the Earley
    parser (scanning finished lexemes and merging sets where lexemes end)."""

    masks: int = 0
    total: float = 0.0
    rows: float = 0.0
    parser: float = 0.0

    def fractions(self) -> dict[str, float]:
        t = self.total or 1.0
        return {"walk": (self.total - self.rows) / t, "rows": (self.rows - self.parser) / t,
                "parser": self.parser / t}


def _release(parsers: list[weakref.ref]) -> None:
    for ref in parsers:
        parser = ref()
        if parser is not None:
            parser.release()


class GrammarAutomaton(TokenAutomaton):
    """Token automaton of a compiled grammar.

    A state is the frozenset of its lexemes in progress: a value that stays valid whatever
    happens to the caches. Internally states are interned as ints (0 = dead) with packed
    transition rows; when more than `max_states` are interned, the caches are dropped and
    rebuilt on demand, which bounds memory on long generations.
    """

    max_states = 200_000
    #: Leaving tokens of a shape that share their next byte are decided in the view of that
    #: byte (one step down the trie) when there are at least this many of them; fewer are
    #: walked over the shape's own trie of leaving tokens. None: 32, or one per 2048 tokens of
    #: the vocabulary if that is more (a view costs about the same whatever the vocabulary,
    #: while leaving tokens grow with it: Gemma-3's 262k tokens are best served by ~128).
    DEEPER_MIN: int | None = None
    #: ... down to views of prefixes this long; deeper leaving tokens are walked (a chain of
    #: views one byte at a time costs more than walking runs such as bounded whitespace).
    DEEPER_MAX_PREFIX = 3
    #: Bytes of shape splits (inside ids, plus a bool row of the logits width for large ones)
    #: kept before that cache is dropped (they are rebuilt on demand from per-lexeme splits).
    split_cache_bytes = 256 * 2**20
    #: Fills of up to this many (byte, alternative) pairs run in plain Python.
    SMALL_FILL = 256
    #: Leaving tries of up to this many nodes are walked depth first, one transition at a
    #: time (`TokenTrie.walk_each`); larger ones level by level with numpy.
    WALK_EACH_NODES = 2048
    #: Earley sets built by the compiled recognizer where it is available (the Python one
    #: builds the same sets, ~15x slower per new set).
    compiled_parser = True

    def __init__(self, grammar: CompiledGrammar, vocab: Vocabulary) -> None:
        super().__init__(vocab)
        self.grammar = grammar
        self.dfas = grammar.terminal_dfas
        self.parser = new_parser(grammar.cfg, self.compiled_parser)
        self.trie = trie_for(vocab)
        self.profile = MaskProfile()
        self._start = frozenset({(BOUNDARY, 0, self.parser.initial)})
        self.completions = ParserCompletions(grammar.cfg, self.dfas)
        self.root = _root_view(vocab)
        self._lexer = _free_lexer(grammar)
        self._start_tables: dict[frozenset[int], tuple[tuple[int, ...], _Starts]] = {}
        self._first_moves: dict[int, tuple[tuple[int, int], ...]] = {}
        self._shape_splits: dict[tuple, _ShapeSplit] = {}
        self._split_bytes = 0
        self._walked: dict[State, tuple[tuple[_ShapeSplit, ...], tuple[np.ndarray, ...]]] = {}
        self._reset()
        # Earley sets reference each other in cycles through their caches: break them when the
        # automaton goes, so that its sets are freed by reference counting, not by a full GC.
        # (Every parser it used, weakly: a reset may replace a compiled one, which then lives
        # as long as states of it do.)
        self._parsers = [weakref.ref(self.parser)]
        weakref.finalize(self, _release, self._parsers).atexit = False

    def _reset(self) -> None:
        self._numbers: dict[frozenset[Lexeme], int] = {}
        self._lexemes: list[frozenset[Lexeme]] = [frozenset()]
        self._here: list[ParserState | None | bool] = [None]
        self._alts: dict[int, _Alternatives] = {}
        # Keyed by Earley-set serials (`_ends_here`), unique per parser.
        self._here_of: dict[tuple[int, ...], ParserState | None] = {}
        # Rows of expanded states only (most interned states are never expanded), packed:
        # `_slot[state]` is the state's row in `_table`, -1 until built; slot 0 is DEAD's.
        self._slot = np.full(64, -1, np.int64)
        self._slot[DEAD] = 0
        self._owners = [DEAD]  # table row -> state id
        # Rows are set to UNKNOWN as slots are given out (`_slot_of`), not when the table
        # grows: fresh memory costs a page fault per 4 rows at its first write (~1.6 µs each
        # on a VM), and writing a whole grown half at once put milliseconds into one mask.
        self._table = np.empty(256 * 64, np.int32)
        self._table[:256] = DEAD
        self._n_rows = 1

    def _id(self, state: State) -> int:
        """The interned id of a state, dropping all caches first if they grew too large."""
        if len(self._lexemes) > self.max_states:
            self._reset()
            self.clear_caches()
            self.parser.release()
            if isinstance(self.parser, NativeEarleyParser):
                # A compiled parser keeps every set it built until it goes: later states start
                # in a new one (states of this one stay valid, each holding its parser).
                self.parser = new_parser(self.grammar.cfg, self.compiled_parser)
                self._parsers.append(weakref.ref(self.parser))
                self._start = frozenset({(BOUNDARY, 0, self.parser.initial)})
        return self._intern(state)

    def _intern(self, lexemes: frozenset[Lexeme]) -> int:
        k = self._numbers.get(lexemes)
        if k is None:
            if not lexemes:
                return DEAD
            k = self._numbers[lexemes] = len(self._lexemes)
            self._lexemes.append(lexemes)
            self._here.append(False)  # False = not computed yet; None = no lexeme ends here
            if k >= len(self._slot):
                self._slot = np.concatenate([self._slot, np.full(len(self._slot), -1, np.int64)])
        return k

    def _ends_here(self, k: int) -> ParserState | None:
        """The Earley set at the current position: every lexeme that may end here, scanned
        from where it started (ignored ones pass their set through), merged into one set."""
        here = self._here[k]
        if here is False:
            t0 = time.perf_counter()
            acc = self._lexer.accepting
            finished = {(t, origin) for t, s, origin in self._lexemes[k]
                        if t == BOUNDARY or s in acc(t)}
            # Keyed by the origins' serials: a tuple of ints, which the cyclic GC untracks.
            width = len(self.dfas) + 1
            key = tuple(sorted(origin.serial * width + t + 1 for t, origin in finished))
            here = self._here_of.get(key, False)
            if here is not False:
                self._here[k] = here
                self.profile.parser += time.perf_counter() - t0
                return here
            sets = []
            for t, origin in finished:
                if t == BOUNDARY or t in self.grammar.ignore:
                    sets.append(origin)
                if t != BOUNDARY and t in origin.expected:
                    sets.append(origin.scan(t))
            sets = list(dict.fromkeys(s for s in sets if s is not None))
            if not sets:
                here = None
            elif len(sets) == 1:
                here = sets[0]
            else:
                # All of them sit at this same position (up to ignored text): their union
                # continues as any of them does.
                here = sets[0].parser.union(sets)
            self._here[k] = self._here_of[key] = here
            self.profile.parser += time.perf_counter() - t0
        return here

    def _alternatives(self, k: int) -> _Alternatives:
        """The lexemes that may read the next byte from state k — those in progress, and those
        starting here if some lexeme can end here — with their DFA rows (cached per state)."""
        alts = self._alts.get(k)
        if alts is None:
            progress: frozenset[Lexeme] | tuple[Lexeme, ...] = self._lexemes[k]
            if any(t == BOUNDARY for t, _, _ in progress):  # the start state
                progress = tuple(lex for lex in progress if lex[0] != BOUNDARY)
            here = self._ends_here(k)
            starting: tuple[int, ...] = ()
            starts = None
            if here is not None:
                starting, starts = self._start_table(here.expected | self.grammar.ignore)
            alts = self._alts[k] = _Alternatives(progress, here, starts, starting, self.dfas)
        return alts

    def _start_table(self, terminals: frozenset[int]) -> tuple[tuple[int, ...], _Starts]:
        """(the terminals sorted, per byte the (terminal, DFA state) pairs starting with it),
        from each terminal's first moves, read once. A new Earley set often expects a new set
        of terminals (function-calling schemas: a table every other mask), and 256 lists per
        table cost more than the few bytes that start something."""
        got = self._start_tables.get(terminals)
        if got is None:
            per_byte: _Starts = {}
            ordered = tuple(sorted(terminals))
            firsts = self._first_moves
            for t in ordered:
                moves = firsts.get(t)
                if moves is None:
                    dfa = self.dfas[t]
                    row = dfa.transitions[dfa.initial]
                    live = np.flatnonzero(row >= 0)
                    moves = firsts[t] = tuple(zip(live.tolist(), row[live].tolist()))
                for b, s in moves:
                    per_byte[b] = (*per_byte.get(b, ()), (t, s))
            got = self._start_tables[terminals] = (ordered, per_byte)
        return got

    def _fill(self, k: int, data: np.ndarray) -> None:
        """Compute and store the transitions of state k on the (distinct) bytes `data`."""
        t0 = time.perf_counter()
        alts = self._alternatives(k)
        slot = self._slot_of(k)
        progress, starts = alts.progress, alts.starts
        if not progress and starts is None:
            targets: np.ndarray | list[int] = np.full(len(data), DEAD, np.int32)
        elif len(data) * (len(progress) + 8) <= self.SMALL_FILL:  # plain Python beats numpy
            here = alts.here
            intern = self._intern
            targets = []
            moves = alts.moves()
            for b in data.tolist():
                lex = [(t, row[b], o) for t, row, o in moves if row[b] >= 0]
                if starts is not None:
                    for t, s in starts.get(b, ()):
                        lex.append((t, s, here))
                targets.append(intern(frozenset(lex)))
        else:
            tags = tuple(alts.tags())
            columns, inverse = _distinct_columns(alts.matrix[:, data])
            ids = [self._intern(frozenset((t, s, o) for (t, o), s in zip(tags, col) if s >= 0))
                   for col in columns.T.tolist()]
            targets = np.asarray(ids, np.int32)[inverse]
        if len(data) == 1:  # (a scalar store: most fills are of one byte)
            self._table[slot * 256 + int(data[0])] = targets[0]
        else:
            self._table[slot * 256 + data] = targets
        self.profile.rows += time.perf_counter() - t0

    def _slot_of(self, k: int) -> int:
        """State k's row in the transition table, allocated (all unknown) on first use."""
        slot = self._slot.item(k)
        if slot < 0:
            slot = self._n_rows
            self._slot[k] = slot
            self._owners.append(k)
            self._n_rows += 1
            if self._n_rows * 256 > len(self._table):
                grown = np.empty(2 * len(self._table), np.int32)
                grown[: slot * 256] = self._table[: slot * 256]
                self._table = grown
            self._table[slot * 256 : (slot + 1) * 256] = UNKNOWN
        return slot

    def _next(self, k: int, b: int, siblings: np.ndarray | None = None) -> int:
        """State k's transition on byte b, built (if unknown) together with those on the
        `siblings` bytes (b among them) still unknown: a walk reads them next, and one fill
        serves them all."""
        slot = self._slot.item(k)  # (`.item`: a Python int, ~2x faster than int(a[i]))
        if slot < 0:
            slot = self._slot_of(k)  # may grow (replace) the table: index it only afterwards
        nxt = self._table.item(slot * 256 + b)
        if nxt == UNKNOWN:
            if siblings is None or len(siblings) == 1:  # (most fills: b alone is unknown)
                self._fill(k, np.array([b]) if siblings is None else siblings)
            else:
                self._fill(k, siblings[self._table[slot * 256 + siblings] == UNKNOWN])
            nxt = self._table.item(slot * 256 + b)
        return nxt

    sink = DEAD

    def step(self, states: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Next state of each (state, byte) pair. Transitions are computed only for the pairs a
        walk or a token actually reaches, so states are created only along real token prefixes."""
        slots = self._slot[states]
        if (slots < 0).any():
            for k in np.unique(states[slots < 0]).tolist():
                self._slot_of(k)
            slots = self._slot[states]
        flat = slots * 256 + data
        nxt = self._table[flat]
        unknown = nxt == UNKNOWN
        if unknown.any():
            pairs = np.unique(flat[unknown])  # sorted: grouped by slot
            pair_slots = pairs // 256
            bounds = np.flatnonzero(np.diff(pair_slots)) + 1
            for group in np.split(pairs, bounds):
                self._fill(self._owners[int(group[0]) // 256], group % 256)
            nxt = self._table[flat]
        return nxt

    @property
    def start(self) -> State:
        return self._start

    def is_accepting(self, state: State) -> bool:
        return self._accepting_id(self._id(state))

    def _parts(self, state: State) -> tuple[tuple[_ShapeSplit, ...], tuple[np.ndarray, ...]]:
        """The state's allowed content tokens as shape splits (whose inside rows are allowed)
        and walked leaving-token ids, computed once per state."""
        parts = self._walked.get(state)
        if parts is None:
            t0 = time.perf_counter()
            k = self._id(state)
            splits: list[_ShapeSplit] = []
            walked: list[np.ndarray] = []
            # The walk allocates many long-lived cached objects: a collection during it would
            # only re-traverse the heap.
            with _gc_paused():
                self._allowed_below(k, self.root, splits, walked)
            if len(self._walked) >= self.max_states:
                self._walked.clear()
            parts = self._walked[state] = (tuple(splits), tuple(w for w in walked if len(w)))
            self.profile.total += time.perf_counter() - t0
            self.profile.masks += 1
        return parts

    def _allowed_below(self, k: int, view: _View, splits: list[_ShapeSplit],
                       walked: list[np.ndarray]) -> None:
        """Collect the tokens of `view` allowed from state k (the state after its prefix):
        the shape's inside tokens, its few leaving tokens walked from k, and the rest of the
        leaving tokens recursively, one byte further down, from the state after that byte."""
        split = self._shape_split(k, view)
        splits.append(split)
        if split.leaving is not None:
            if split.leaving.n_nodes <= self.WALK_EACH_NODES:
                walked.append(np.array(split.leaving.walk_each(self._next, k, DEAD), np.int64))
            else:
                walked.append(split.leaving.walk(self, k)[0])
        deeper = np.array(split.deeper, np.int64) if len(split.deeper) > 1 else None
        for b in split.deeper:
            nxt = self._next(k, b, deeper)
            if nxt != DEAD:
                self._allowed_below(nxt, view.child(b), splits, walked)

    def _allowed_row(self, state: State) -> np.ndarray:
        """The allowed content tokens as a bool row of the logits width (a fresh array)."""
        splits, walked = self._parts(state)
        row = splits[0].inside_row.copy()
        for split in splits[1:]:
            if 16 * split.n_inside > self.vocab.width:
                row |= split.inside_row
            elif split.n_inside:
                row[split.inside] = True
        for ids in walked:
            row[ids] = True
        return row

    def _content_ids(self, state: State) -> np.ndarray:
        return np.flatnonzero(self._allowed_row(state))

    def mask(self, state: State) -> torch.Tensor:
        """As `TokenAutomaton.mask`, built from the shape splits' inside rows (cheaper than
        scattering every allowed id on large vocabularies)."""
        m = self._masks.get(state)
        if m is None:
            if state is DONE:
                return super().mask(state)
            splits, walked = self._parts(state)
            eos = self._eos if self.is_accepting(state) else None
            if len(splits) == 1:
                m, held = splits[0].mask(eos, walked)
                self._split_bytes += held
                return self._keep_mask(state, m)
            row = self._allowed_row(state)
            if eos is not None:
                row[eos] = True
            m = self._keep_mask(state, torch.from_numpy(row))
        return m

    def only_eos(self, state: State) -> bool:
        if state is DONE:
            return False
        splits, walked = self._parts(state)
        return (not any(split.n_inside for split in splits) and not walked
                and self.is_accepting(state))

    def clear_caches(self) -> None:
        super().clear_caches()
        self._walked.clear()

    def _shape(self, k: int) -> tuple[tuple[int, int], ...]:
        """The (terminal, DFA state) pairs that may read the next byte from state k."""
        pairs = {(t, s) for t, s, _ in self._lexemes[k] if t != BOUNDARY}
        here = self._ends_here(k)
        if here is not None:
            pairs.update((t, self.dfas[t].initial) for t in here.expected | self.grammar.ignore)
        return tuple(sorted(pairs))

    def _shape_split(self, k: int, view: _View) -> _ShapeSplit:
        """The split of `view` by state k's shape (cached per shape and view, here and across
        automata: see `_SHAPE_SPLITS`)."""
        shape = self._shape(k)
        key = (shape, view.key)
        split = self._shape_splits.get(key)
        if split is None:
            if self._split_bytes > self.split_cache_bytes:
                self._shape_splits.clear()
                self._split_bytes = 0
            lexer = self._lexer
            shared_key = (tuple((self.dfas[t], s, lexer.follow_starts(t)[1]) for t, s in shape),
                          view.key,
                          lexer if lexer.prunes and self.vocab.width >= lexer.MIN_VOCAB
                          else None, self.DEEPER_MIN, self.DEEPER_MAX_PREFIX)
            split = _SHAPE_SPLITS.get(shared_key)
            if split is None:
                split = _SHAPE_SPLITS[shared_key] = self._new_shape_split(shape, view)
                if len(_SHAPE_SPLITS) > _SHAPE_SPLITS_MAX:
                    _SHAPE_SPLITS.popitem(last=False)
            else:
                _SHAPE_SPLITS.move_to_end(shared_key)
            self._shape_splits[key] = split
            self._split_bytes += split.local.nbytes + (0 if view.dense else self.vocab.width)
        return split

    def _new_shape_split(self, shape: tuple[tuple[int, int], ...], view: _View) -> _ShapeSplit:
        """The split of `view` by the lexemes of `shape`: the union of their splits, with the
        leaving tokens sorted into those walked and those split again one byte down."""
        _batch_lexeme_splits(self._lexer, shape, view)
        parts = [_lexeme_split(self._lexer, t, s, view, self.vocab) for t, s in shape]
        n = len(view.ids)
        is_inside = _inside_union([inside for inside, _ in parts], n)
        leaving = _sorted_union([out for _, out in parts], n)
        leaving = leaving[~is_inside[leaving]]
        nb = view.next_byte[leaving]
        least = self.DEEPER_MIN
        if least is None:
            least = max(32, self.vocab.width // 2048)
        deeper = np.flatnonzero(np.bincount(nb, minlength=256) >= max(least, 1))
        if len(view.prefix) >= self.DEEPER_MAX_PREFIX:
            deeper = deeper[:0]
        if len(deeper):
            walked = np.ones(256, bool)
            walked[deeper] = False
            leaving = leaving[walked[nb]]
        trie = _leaving_trie(self.vocab, view, view.ids[leaving]) if len(leaving) else None
        return _ShapeSplit(view, is_inside, trie, tuple(deeper.tolist()), self.vocab.width)

    def _advance_bytes(self, state: State, data: bytes) -> State | None:
        k = self._id(state)
        for b in data:
            k = self._next(k, b)
            if k == DEAD:
                return None
        return self._lexemes[k]

    def forced_bytes(self, state: State) -> bytes:
        out = bytearray()
        k = self._id(state)
        while len(out) < 256 and not self._accepting_id(k):
            alts = self._alternatives(k)
            live = np.flatnonzero((alts.matrix >= 0).any(axis=0)).tolist() if alts.rows else []
            if len(live) != 1:
                break
            out.append(live[0])
            k = self._next(k, live[0])
        return bytes(out)

    def narrower(self, h: State, g: State, skip: bytes) -> bool:
        """Whether state h reads, along bytes of `skip` and then any text, only what g reads,
        into states that stay narrower than g's: both hold one lexeme, of one terminal begun
        at one Earley set, h's in a DFA state whose strings g's accepts too, and where that
        lexeme ends no lexeme starts with a `skip` byte. (A search over `skip` runs from g then
        covers h: the key tracker's whitespace before a key.) False is always safe."""
        if len(h) != 1 or len(g) != 1:
            return False
        ((t, s, origin),), ((t2, s2, origin2),) = g, h
        if t != t2 or origin is not origin2 or t == BOUNDARY:
            return False
        if s != s2 and not self.dfas[t].includes(s, s2):
            return False
        here = self._ends_here(self._id(g))
        if here is not None:
            starts = self._start_table(here.expected | self.grammar.ignore)[1]
            if any(b in starts for b in skip):
                return False
        return self._ends_here(self._id(h)) in (None, here)

    def _accepting_id(self, k: int) -> bool:
        here = self._ends_here(k)
        return here is not None and here.accepting

    def completion_bytes(self, state: State) -> bytes | None:
        best = None
        for t, s, origin in state:
            if t == BOUNDARY:
                candidates = [self.completions.complete(origin)]
            else:
                after = [origin] if t in self.grammar.ignore else []
                if t in origin.expected:
                    after.append(origin.scan(t))
                rest = dfa_completion(self.dfas[t], s)
                candidates = [rest + tail for a in after if a is not None
                              for tail in (self.completions.complete(a),) if tail is not None]
            for text in candidates:
                if text is not None and (best is None or len(text) < len(best)):
                    best = text
        return best


class Grammar(Constraint):
    """Text in the language of a Lark grammar (`start` names the start rule).

    Accepts Lark's grammar language; grammars Lark rejects raise GrammarError with Lark's
    line/column, and terminals structgen cannot enforce exactly (lookarounds, terminals
    declared for a post-lexer) are refused, never widened. Terminal regexes follow `Regex`:
    `\\d \\w \\s` match their ASCII members only (a narrowing: outputs always stay in the
    language).
    """

    def __init__(self, text: str, start: str = "start") -> None:
        super().__init__()
        self.text = text
        self.start = start
        self.compiled = self._shared(("grammar", text, start), lambda: compile_lark(text, start))

    @classmethod
    def from_gbnf(cls, text: str) -> "Grammar":
        """Import a llama.cpp GBNF grammar (start rule `root`)."""
        from ..automata.gbnf import gbnf_to_lark

        lark_text, start = gbnf_to_lark(text)
        return cls(lark_text, start)

    def __repr__(self) -> str:
        return f"Grammar(<{len(self.compiled.cfg.rules)} rules>, start={self.start!r})"

    def _build(self, vocab: Vocabulary) -> GrammarAutomaton:
        return GrammarAutomaton(self.compiled, vocab)
