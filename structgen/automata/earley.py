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
        self.closure_nts = self._closure_nonterminals()
        self._predictions: dict[frozenset[int], Prediction] = {}
        self.initial = ParserState(self, [(r, 0, None) for r in self.by_lhs.get(cfg.start, ())])

    def _closure_nonterminals(self) -> dict[int, frozenset[int]]:
        """For each nonterminal, every nonterminal predicted along with it (itself included):
        those at the start of its rules, past nullable symbols, transitively."""
        direct: dict[int, set[int]] = {}
        for lhs, rhs in self.rules:
            for sym in rhs:
                if sym >= self.n_terminals:
                    direct.setdefault(lhs, set()).add(sym)
                if sym not in self.nullable:
                    break
        out: dict[int, frozenset[int]] = {}
        for nt in {lhs for lhs, _ in self.rules}:
            seen, todo = {nt}, [nt]
            while todo:
                for nxt in direct.get(todo.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        todo.append(nxt)
            out[nt] = frozenset(seen)
        return out

    def prediction(self, nts: frozenset[int]) -> "Prediction":
        """The items an Earley set predicts for these nonterminals (origin: the set itself)."""
        pred = self._predictions.get(nts)
        if pred is None:
            pred = self._predictions[nts] = Prediction(self, nts)
        return pred


class Prediction:
    """The predicted part of an Earley set — items (rule, dot) whose origin is the set itself —
    which depends only on the nonterminals predicted, so sets share it: building a set only
    walks its kernel (items carried over from earlier sets)."""

    __slots__ = ("items", "waiting", "expected", "by_terminal")

    def __init__(self, parser: EarleyParser, nts: frozenset[int]) -> None:
        rules, nullable, nt = parser.rules, parser.nullable, parser.n_terminals
        items: list[tuple[int, int]] = []
        waiting: dict[int, list[tuple[int, int]]] = {}
        by_terminal: dict[int, list[tuple[int, int]]] = {}
        for lhs in nts:
            for rule in parser.by_lhs.get(lhs, ()):
                rhs = rules[rule][1]
                for dot in range(len(rhs) + 1):  # dot 0, then past each nullable symbol
                    items.append((rule, dot))
                    if dot == len(rhs):
                        break
                    sym = rhs[dot]
                    if sym >= nt:
                        waiting.setdefault(sym, []).append((rule, dot))
                    else:
                        by_terminal.setdefault(sym, []).append((rule, dot + 1))
                    if sym not in nullable:
                        break
        self.items = tuple(items)
        self.waiting = {k: tuple(v) for k, v in waiting.items()}
        self.by_terminal = {k: tuple(v) for k, v in by_terminal.items()}
        self.expected = frozenset(by_terminal)


Item = tuple[int, int, "ParserState | None"]  # (rule, dot, origin); origin None = this set


class ParserState:
    """One Earley set. `expected` holds the terminals that may come next.

    Items are kept in two parts: those derived from the kernel (any origin, walked when the
    set is built) and the shared `Prediction` (origin: this set), materialized on demand.
    """

    __slots__ = ("parser", "kernel_items", "kernel_waiting", "prediction", "expected",
                 "accepting", "_scans", "_by_terminal", "_items", "_waiting", "__weakref__")
    # `_scans` memoizes successors weakly: a history someone still holds maps to one object,
    # while sets nothing refers to any more (explored, not taken) can be freed.

    def __init__(self, parser: EarleyParser, kernel: Sequence[Item]) -> None:
        self.parser = parser
        self._scans: weakref.WeakValueDictionary[int, ParserState] = weakref.WeakValueDictionary()
        self._by_terminal: dict[int, list[Item]] | None = None
        self._items: frozenset[tuple[int, int, ParserState]] | None = None
        self._waiting: dict[int, list[tuple[int, int, ParserState]]] | None = None
        rules, nullable, nt = parser.rules, parser.nullable, parser.n_terminals
        closure = parser.closure_nts
        items: set[tuple[int, int, ParserState]] = set()
        waiting: dict[int, list[tuple[int, int, ParserState]]] = {}
        predicted: set[int] = set()
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
                    if sym not in predicted:
                        predicted |= closure[sym]
                    if sym in nullable:  # Aycock–Horspool: step over nullable symbols at once
                        agenda.append((rule, dot + 1, origin))
                continue
            if origin is self:
                continue  # nullable completions inside this set are handled above
            for r2, d2, o2 in origin.waiting_for(lhs):
                agenda.append((r2, d2 + 1, o2))
        self.kernel_items = items
        self.kernel_waiting = waiting
        self.prediction = pred = parser.prediction(frozenset(predicted))
        self.expected = pred.expected.union(
            rhs[dot]
            for rule, dot, _ in items
            for rhs in (rules[rule][1],)
            if dot < len(rhs) and rhs[dot] < nt
        )
        start = parser.cfg.start
        root = parser.__dict__.get("initial", self)  # while building the initial state: itself
        # Only the initial set can hold a finished start item whose origin is itself, and
        # those come from its kernel or its prediction (a nullable start symbol).
        self.accepting = any(
            rules[rule][0] == start and dot == len(rules[rule][1]) and origin is root
            for rule, dot, origin in (self.items if root is self else items)
        )

    def waiting_for(self, sym: int) -> list[tuple[int, int, ParserState]]:
        """Items of this set whose dot is before nonterminal `sym`."""
        out = self.kernel_waiting.get(sym, [])
        predicted = self.prediction.waiting.get(sym)
        if predicted:
            out = out + [(r, d, self) for r, d in predicted]
        return out

    @property
    def items(self) -> frozenset[tuple[int, int, ParserState]]:
        if self._items is None:
            self._items = frozenset(self.kernel_items).union(
                (r, d, self) for r, d in self.prediction.items)
        return self._items

    @property
    def waiting(self) -> dict[int, list[tuple[int, int, ParserState]]]:
        if self._waiting is None:
            syms = set(self.kernel_waiting) | set(self.prediction.waiting)
            self._waiting = {sym: self.waiting_for(sym) for sym in syms}
        return self._waiting

    def scan(self, terminal: int) -> ParserState | None:
        """The state after `terminal`, or None if it cannot come next (memoized)."""
        if terminal not in self.expected:
            return None
        nxt = self._scans.get(terminal)
        if nxt is None:
            if self._by_terminal is None:  # index once: items grouped by the terminal they await
                rules = self.parser.rules
                by_terminal: dict[int, list[Item]] = {}
                for rule, dot, origin in self.kernel_items:
                    rhs = rules[rule][1]
                    if dot < len(rhs) and rhs[dot] < self.parser.n_terminals:
                        by_terminal.setdefault(rhs[dot], []).append((rule, dot + 1, origin))
                self._by_terminal = by_terminal
            kernel = self._by_terminal.get(terminal, [])
            predicted = self.prediction.by_terminal.get(terminal, ())
            if predicted:
                kernel = kernel + [(r, d, self) for r, d in predicted]
            nxt = self._scans[terminal] = ParserState(self.parser, kernel)
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
