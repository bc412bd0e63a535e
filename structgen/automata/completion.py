"""Shortest completions: the fewest bytes that turn a prefix into a complete match.

Budget-aware decoding needs, for any state, a completion it can always fall back on. For byte
DFAs that is a reverse breadth-first search from the accepting states; for grammars the parser
part is a shortest derivation over Earley items (see `parser_completion`).
"""
from __future__ import annotations

import weakref
from functools import cached_property
from typing import Sequence

import numpy as np

from .bytedfa import ByteDFA, shortest_to_accept
from .earley import CFG, ParserState

_DFA_TABLES: "weakref.WeakKeyDictionary[ByteDFA, tuple[np.ndarray, np.ndarray]]" = (
    weakref.WeakKeyDictionary()
)


def _dfa_tables(dfa: ByteDFA) -> tuple[np.ndarray, np.ndarray]:
    """(distance to acceptance, first byte of a shortest completion) for every state."""
    tables = _DFA_TABLES.get(dfa)
    if tables is None:
        tables = _DFA_TABLES[dfa] = shortest_to_accept(dfa.transitions, dfa.accepting)
    return tables


def dfa_distances(dfa: ByteDFA) -> np.ndarray:
    """Bytes to acceptance from every state (-1: never), cached per DFA."""
    return _dfa_tables(dfa)[0]


def dfa_completion(dfa: ByteDFA, state: int) -> bytes:
    """A shortest byte string leading from `state` to acceptance (b"" if accepting)."""
    dist, step = _dfa_tables(dfa)
    out = bytearray()
    table = dfa.transitions  # (not `rows`: listing a large table costs more than the path)
    while dist[state] > 0:
        b = int(step[state])
        out.append(b)
        state = int(table[state, b])
    return bytes(out)


def dfa_shortest_match(dfa: ByteDFA) -> bytes:
    return dfa_completion(dfa, dfa.initial)


class ParserCompletions:
    """Shortest terminal-level completions of Earley states, rendered as bytes.

    `symbol_text[s]` is a shortest text of symbol s (a shortest lexeme for terminals, a
    shortest derivation for nonterminals). Completing a state means finishing one of its items
    and then, through the item's origin set, whatever waited for that item's left-hand side —
    up to the start symbol begun at the root.
    """

    def __init__(self, cfg: CFG, terminal_dfas: Sequence[ByteDFA]) -> None:
        self.cfg = cfg
        self._dfas = terminal_dfas
        self._after: "weakref.WeakKeyDictionary[ParserState, dict[int, bytes]]" = (
            weakref.WeakKeyDictionary()
        )
        self._complete: "weakref.WeakKeyDictionary[ParserState, bytes]" = (
            weakref.WeakKeyDictionary())

    @cached_property
    def symbol_text(self) -> list[bytes | None]:
        """Shortest text of every symbol (of terminals, a shortest lexeme), on first use: only
        completions need it, and a schema's first mask should not wait for it."""
        text: list[bytes | None] = [dfa_shortest_match(d) for d in self._dfas]
        text += [None] * len(self.cfg.nonterminal_names)
        changed = True
        while changed:  # Bellman–Ford style: shortest derivation of every nonterminal
            changed = False
            for lhs, rhs in self.cfg.rules:
                parts = [text[s] for s in rhs]
                if any(p is None for p in parts):
                    continue
                joined = b"".join(parts)  # type: ignore[arg-type]
                best = text[lhs]
                if best is None or len(joined) < len(best):
                    text[lhs] = joined
                    changed = True
        return text

    def _rest(self, rule: int, dot: int) -> bytes:
        return b"".join(self.symbol_text[s] for s in self.cfg.rules[rule][1][dot:])

    def _after_symbol(self, origin: ParserState) -> dict[int, bytes]:
        """For each nonterminal A waited on in `origin`: shortest text completing the parse
        once an A starting at `origin` is finished."""
        # Earlier sets first, iteratively (histories can be longer than Python's stack).
        pending = [origin]
        while pending:
            o = pending[-1]
            if o in self._after:
                pending.pop()
                continue
            deps = {o2 for items in o.waiting.values() for _, _, o2 in items
                    if o2 is not o and o2 not in self._after}
            if deps:
                pending.extend(deps)
                continue
            pending.pop()
            self._after[o] = self._solve_set(o)
        return self._after[origin]

    def _solve_set(self, o: ParserState) -> dict[int, bytes]:
        best: dict[int, bytes] = {}
        if o.serial == o.parser.initial.serial:  # its own parser's root (automata replace
            # compiled parsers; and a compiled parser's handles are remade after `release`)
            best[self.cfg.start] = b""
        changed = True
        while changed:  # items predicted in `o` itself form cycles: iterate to a fixpoint
            changed = False
            for sym, items in o.waiting.items():
                for rule, dot, o2 in items:
                    lhs = self.cfg.rules[rule][0]
                    tail = best.get(lhs) if o2 is o else self._after[o2].get(lhs)
                    if tail is None:
                        continue
                    text = self._rest(rule, dot + 1) + tail
                    if sym not in best or len(text) < len(best[sym]):
                        best[sym] = text
                        changed = True
        return best

    def complete(self, state: ParserState) -> bytes | None:
        """A shortest text after which `state` accepts (None if it never can)."""
        if state in self._complete:
            return self._complete[state]
        if state.accepting:
            self._complete[state] = b""
            return b""
        best = None
        for rule, dot, origin in state.items:
            tail = self._after_symbol(origin).get(self.cfg.rules[rule][0])
            if tail is None:
                continue
            text = self._rest(rule, dot) + tail
            if best is None or len(text) < len(best):
                best = text
        self._complete[state] = best
        return best
