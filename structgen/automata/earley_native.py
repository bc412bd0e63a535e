"""The Earley recognizer compiled (`earley_core.c`), behind the interface of `EarleyParser`.

Fresh masks of code grammars spent half their time in the Python recognizer: a token that
crosses lexemes ends some at every boundary, and each end scans a terminal into a new Earley
set (~120 new sets per fresh C-like mask, 20–30 µs each in Python). The compiled core builds
a set in a few microseconds. Its sets live in one arena per parser; `NativeState` is a thin,
weakly memoized handle (one object per set while anything holds it, as `ParserState` is), so
caches keyed by sets and by their serials work unchanged.

The arena is freed with its parser; `GrammarAutomaton` starts a new parser when it resets its
caches, which bounds it on long runs (states of the old one stay valid: each holds its parser).
Without the compiled kernels (`vocab.native.available()` False), `new_parser` gives the Python
`EarleyParser`, whose sets are the same (tests compare the two).
"""
from __future__ import annotations

import ctypes
import weakref
from typing import Sequence

import numpy as np

from ..vocab import native
from .earley import CFG, EarleyParser, _bases


def new_parser(cfg: CFG, compiled: bool = True) -> "NativeEarleyParser | EarleyParser":
    """The compiled parser where the kernels are built (and `compiled`), else the Python one."""
    if compiled and native.available():
        return NativeEarleyParser(cfg)
    return EarleyParser(cfg)


class NativeEarleyParser:
    """An arena of Earley sets in C for one grammar; `initial` is the set before any text."""

    def __init__(self, cfg: CFG) -> None:
        lib = native._lib
        assert lib is not None
        self.cfg = cfg
        self.n_terminals = cfg.n_terminals
        self.rules = cfg.rules
        n_symbols = cfg.n_terminals + len(cfg.nonterminal_names)
        lhs = np.array([r[0] for r in cfg.rules], np.int32)
        starts = np.zeros(len(cfg.rules) + 1, np.int32)
        starts[1:] = np.cumsum([len(r[1]) for r in cfg.rules])
        rhs = np.array([s for r in cfg.rules for s in r[1]], np.int32)
        nullable = np.zeros(n_symbols, np.uint8)
        nullable[list(cfg.nullable)] = 1
        handle = lib.structgen_earley_new(cfg.n_terminals, n_symbols, len(cfg.rules),
                                          lhs.ctypes.data, starts.ctypes.data, rhs.ctypes.data,
                                          nullable.ctypes.data, cfg.start)
        if not handle:
            raise MemoryError("the Earley arena could not be allocated")
        self._handle = handle
        weakref.finalize(self, lib.structgen_earley_free, handle)
        self._lib = lib
        self._scan = lib.structgen_earley_scan
        self._info = lib.structgen_earley_info
        self._base = next(_bases)
        self._buffer = (ctypes.c_int32 * 256)()
        self._frozen: dict[frozenset[int], frozenset[int]] = {}
        # Handles by id, held here while the parser lives (`release` drops them): a list
        # index beats a weak mapping on the hot path, and handles are small beside their sets.
        self._states: list[NativeState | None] = []
        self._unions: dict[tuple[int, ...], NativeState] = {}

    @property
    def initial(self) -> "NativeState":
        """The set before any text (a handle like any other: none is kept apart, so that
        `release` leaves no cycle through the parser)."""
        return self._state(0)

    def _state(self, k: int) -> "NativeState":
        """The handle of set k (made on first use: its accepting flag and expected terminals
        copied out once)."""
        states = self._states
        if k < len(states):
            state = states[k]
            if state is not None:
                return state
        else:
            states.extend([None] * (k + 1 - len(states)))
        buf = self._buffer
        need = self._info(self._handle, k, buf, len(buf))
        if need > len(buf):
            buf = self._buffer = (ctypes.c_int32 * (2 * need))()
            self._info(self._handle, k, buf, len(buf))
        expected = frozenset(buf[2:need])
        state = states[k] = NativeState(self, k, self._frozen.setdefault(expected, expected),
                                        bool(buf[0]))
        return state

    def union(self, sets: Sequence["NativeState"]) -> "NativeState":
        """One set standing for several at one position (see `ParserState.union`)."""
        ids = tuple(sorted({s.id for s in sets}))
        if len(ids) == 1:  # (handles of one set remade after `release`)
            return self._state(ids[0])
        got = self._unions.get(ids)
        if got is None:
            k = self._lib.structgen_earley_union(self._handle, (ctypes.c_int32 * len(ids))(*ids),
                                                 len(ids))
            if k < 0:
                raise MemoryError("the Earley arena could not grow")
            got = self._unions[ids] = self._state(k)
        return got

    def items(self, state: "NativeState") -> list[tuple[int, int, "NativeState"]]:
        fn = self._lib.structgen_earley_items
        need = fn(self._handle, state.id, None, 0)
        out = (ctypes.c_int32 * need)()
        fn(self._handle, state.id, out, need)
        flat = out[:]
        return [(flat[i], flat[i + 1], self._state(flat[i + 2])) for i in range(0, need, 3)]

    def release(self) -> None:
        """Drop the handles (each holds the parser: a cycle): the automaton is done with them,
        and any still held elsewhere stay valid."""
        self._states = []
        self._unions = {}


class NativeState:
    """One Earley set of a `NativeEarleyParser`: `expected` terminals, `accepting`, and the
    successors by `scan`. Hashes by identity, like `ParserState`."""

    __slots__ = ("parser", "id", "serial", "expected", "accepting", "__weakref__")

    def __init__(self, parser: NativeEarleyParser, k: int, expected: frozenset[int],
                 accepting: bool) -> None:
        self.parser = parser
        self.id = k
        self.serial = parser._base + k
        self.expected = expected
        self.accepting = accepting

    def scan(self, terminal: int) -> "NativeState | None":
        """The state after `terminal`, or None if it cannot come next (memoized)."""
        if terminal not in self.expected:
            return None
        parser = self.parser
        k = parser._scan(parser._handle, self.id, terminal)
        if k < 0:
            if k == -1:
                return None
            raise MemoryError("the Earley arena could not grow")
        return parser._state(k)

    @property
    def items(self) -> frozenset[tuple[int, int, "NativeState"]]:
        """Unfinished items (rule, dot, origin); finished ones have acted and are not kept."""
        return frozenset(self.parser.items(self))

    @property
    def waiting(self) -> dict[int, tuple[tuple[int, int, "NativeState"], ...]]:
        """Items by the nonterminal after their dot."""
        rules, nt = self.parser.rules, self.parser.n_terminals
        out: dict[int, list[tuple[int, int, NativeState]]] = {}
        for item in self.parser.items(self):
            sym = rules[item[0]][1][item[1]]
            if sym >= nt:
                out.setdefault(sym, []).append(item)
        return {sym: tuple(got) for sym, got in out.items()}

    def __repr__(self) -> str:
        names = self.parser.cfg.terminal_names
        return (f"NativeState(expected={sorted(names[t] for t in self.expected)}, "
                f"accepting={self.accepting})")
