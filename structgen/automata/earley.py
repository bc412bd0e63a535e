"""An Earley recognizer over terminal ids whose states are immutable, shared values.

Each `ParserState` is one Earley set (after prediction and completion). Scanning a terminal
returns a new state and memoizes it (weakly), so the same history yields the same object while
anything holds it: states hash by identity, and caches keyed by them stay valid.
Any context-free grammar works (ambiguous, left-recursive, nullable rules), not only LALR(1).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class CFG:
    """Rules over symbols: terminals are 0..n_terminals-1, nonterminals n_terminals and up.

    Every nonterminal must be productive (derive some terminal string): `grammar.py` trims
    the others, which is what makes "the chart is not empty" mean "the prefix is viable".
    """

    n_terminals: int
    rules: tuple[tuple[int, tuple[int, ...]], ...]  # (lhs, rhs)
    start: int
    terminal_names: tuple[str, ...]
    nonterminal_names: tuple[str, ...]


class EarleyParser:
    """Grammar tables shared by all states of one grammar."""

    def __init__(self, cfg: CFG) -> None:
        self.cfg = cfg
        self.n_terminals = cfg.n_terminals
        self.rules = cfg.rules
        by_lhs: dict[int, list[int]] = {}
        for i, (lhs, _) in enumerate(cfg.rules):
            by_lhs.setdefault(lhs, []).append(i)
        self.by_lhs = {k: tuple(v) for k, v in by_lhs.items()}
        self.nullable = _nullable(cfg)
        self.initial = ParserState(self, [(r, 0, None) for r in self.by_lhs.get(cfg.start, ())])


Item = tuple[int, int, "ParserState | None"]  # (rule, dot, origin); origin None = this set


class ParserState:
    """One Earley set. `expected` holds the terminals that may come next."""

    __slots__ = ("parser", "items", "waiting", "expected", "accepting", "_scans", "_by_terminal",
                 "__weakref__")
    # `_scans` memoizes successors weakly: a history someone still holds maps to one object,
    # while sets nothing refers to any more (explored, not taken) can be freed.

    def __init__(self, parser: EarleyParser, kernel: Sequence[Item]) -> None:
        self.parser = parser
        self._scans: weakref.WeakValueDictionary[int, ParserState] = weakref.WeakValueDictionary()
        self._by_terminal: dict[int, list[Item]] | None = None
        rules, by_lhs, nullable, nt = parser.rules, parser.by_lhs, parser.nullable, parser.n_terminals
        items: set[tuple[int, int, ParserState]] = set()
        waiting: dict[int, list[tuple[int, int, ParserState]]] = {}
        agenda = [(r, d, self if o is None else o) for r, d, o in kernel]
        while agenda:
            item = agenda.pop()
            if item in items:
                continue
            items.add(item)
            rule, dot, origin = item
            lhs, rhs = rules[rule]
            if dot < len(rhs):
                sym = rhs[dot]
                if sym >= nt:
                    waiting.setdefault(sym, []).append(item)
                    agenda.extend((r, 0, self) for r in by_lhs.get(sym, ()))
                    if sym in nullable:  # Aycock–Horspool: step over nullable symbols at once
                        agenda.append((rule, dot + 1, origin))
                continue
            if origin is self:
                continue  # nullable completions inside this set are handled above
            for r2, d2, o2 in origin.waiting.get(lhs, ()):
                agenda.append((r2, d2 + 1, o2))
        self.items = frozenset(items)
        self.waiting = waiting
        self.expected = frozenset(
            rhs[dot]
            for rule, dot, _ in items
            for rhs in (rules[rule][1],)
            if dot < len(rhs) and rhs[dot] < nt
        )
        start = parser.cfg.start
        root = parser.__dict__.get("initial", self)  # while building the initial state: itself
        self.accepting = any(
            rules[rule][0] == start and dot == len(rules[rule][1]) and origin is root
            for rule, dot, origin in items
        )

    def scan(self, terminal: int) -> ParserState | None:
        """The state after `terminal`, or None if it cannot come next (memoized)."""
        if terminal not in self.expected:
            return None
        nxt = self._scans.get(terminal)
        if nxt is None:
            if self._by_terminal is None:  # index once: items grouped by the terminal they await
                rules = self.parser.rules
                by_terminal: dict[int, list[Item]] = {}
                for rule, dot, origin in self.items:
                    rhs = rules[rule][1]
                    if dot < len(rhs) and rhs[dot] < self.parser.n_terminals:
                        by_terminal.setdefault(rhs[dot], []).append((rule, dot + 1, origin))
                self._by_terminal = by_terminal
            nxt = self._scans[terminal] = ParserState(self.parser, self._by_terminal[terminal])
        return nxt

    def __repr__(self) -> str:
        names = self.parser.cfg.terminal_names
        return f"ParserState(expected={sorted(names[t] for t in self.expected)}, accepting={self.accepting})"


def _nullable(cfg: CFG) -> frozenset[int]:
    nullable: set[int] = set()
    changed = True
    while changed:
        changed = False
        for lhs, rhs in cfg.rules:
            if lhs not in nullable and all(s in nullable for s in rhs):
                nullable.add(lhs)
                changed = True
    return frozenset(nullable)
