"""An Earley recognizer over terminal ids whose states are immutable, shared values.

Each `ParserState` is one Earley set (after prediction and completion). Scanning a terminal
returns a new state and memoizes it (weakly), so the same history yields the same object while
anything holds it: states hash by identity, and caches keyed by them stay valid.
Any context-free grammar works (ambiguous, left-recursive, nullable rules), not only LALR(1).
"""
from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Sequence

#: Serials of different parsers never meet: each numbers its sets from its own base (caches
#: keyed by serials may outlive a parser that its automaton replaced).
_bases = itertools.count(0, 2**32)


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

    @cached_property
    def nullable(self) -> frozenset[int]:
        """The nonterminals that derive the empty string (once per grammar: the parsers and
        the follow sets each need them, ~1 ms on a schema grammar)."""
        return frozenset(derived(self.rules, lambda s: False))


class EarleyParser:
    """Grammar tables shared by all states of one grammar."""

    #: Whether sets with the same live pieces are made one object (`intern`).
    interning = True
    #: Completions cached per (Earley set, nonterminal) nest at most this deep in one scan
    #: (right-recursive chains completing at once); deeper scans take the plain item walk.
    MAX_NESTING = 200

    def __init__(self, cfg: CFG) -> None:
        self.cfg = cfg
        self.n_terminals = cfg.n_terminals
        self.rules = cfg.rules
        by_lhs: dict[int, list[int]] = {}
        for i, (lhs, _) in enumerate(cfg.rules):
            by_lhs.setdefault(lhs, []).append(i)
        self.by_lhs = {k: tuple(v) for k, v in by_lhs.items()}
        self.nullable = cfg.nullable
        self.closure_nts = self._closure_nonterminals()
        # Cached completions assume no nonterminal derives itself through unit steps (A =>+ A);
        # grammars with such cycles build every set with the plain item walk.
        self.fast = not self._unit_cycles()
        self._predictions: dict[frozenset[int], Prediction] = {}
        # Successors of every set, weakly, keyed by (the set's serial, terminal): one table per
        # parser instead of one per set keeps a set down to a few GC-tracked objects.
        self._scans: weakref.WeakValueDictionary[tuple[int, int], ParserState] = (
            weakref.WeakValueDictionary())
        self._unions: weakref.WeakValueDictionary[tuple[int, ...], ParserState] = (
            weakref.WeakValueDictionary())  # by the sorted serials of the sets merged
        # Every set by its live pieces (ids of live objects: a set holds its pieces): two sets
        # with the same live pieces continue alike, whatever text led to them. Interning them
        # makes positions that differ only in history (the third element of a list and the
        # fourth) one object, so that caches keyed by sets (masks, walks) hit there.
        self._interned: weakref.WeakValueDictionary[tuple, ParserState] = (
            weakref.WeakValueDictionary())
        self._serials = itertools.count(next(_bases))
        self._frozen: dict[frozenset[int], frozenset[int]] = {}
        self.initial = ParserState(self, [(r, 0, None) for r in self.by_lhs.get(cfg.start, ())])

    def _closure_nonterminals(self) -> "_Closures":
        """For each nonterminal, every nonterminal predicted along with it (itself included):
        those at the start of its rules, past nullable symbols, transitively. Computed per
        nonterminal on first use: a schema's grammar has thousands, a parse meets few."""
        direct: dict[int, set[int]] = {}
        for lhs, rhs in self.rules:
            for sym in rhs:
                if sym >= self.n_terminals:
                    direct.setdefault(lhs, set()).add(sym)
                if sym not in self.nullable:
                    break
        return _Closures(direct)

    def _unit_cycles(self) -> bool:
        """Whether some nonterminal derives itself alone (A -> ... B ... with the rest
        nullable, B =>* A): a cycle in the graph of such unit steps (depth-first, colours)."""
        nt, nullable = self.n_terminals, self.nullable
        unit: dict[int, set[int]] = {}
        for lhs, rhs in self.rules:
            solid = [sym for sym in rhs if sym not in nullable]
            if len(solid) > 1:
                continue
            for sym in (solid if solid else rhs):  # one solid symbol: only it can be B
                if sym >= nt:
                    unit.setdefault(lhs, set()).add(sym)
        done: set[int] = set()
        for root in unit:
            if root in done:
                continue
            on_path = {root}
            stack = [(root, iter(unit.get(root, ())))]
            while stack:
                node, kids = stack[-1]
                for kid in kids:
                    if kid in on_path:
                        return True
                    if kid not in done:
                        on_path.add(kid)
                        stack.append((kid, iter(unit.get(kid, ()))))
                        break
                else:
                    stack.pop()
                    on_path.discard(node)
                    done.add(node)
        return False

    def frozen(self, symbols) -> frozenset[int]:
        """`frozenset(symbols)`, one object per distinct set: sets and pieces repeat a few
        symbol sets, and every distinct frozenset is an object the cyclic GC tracks."""
        fs = frozenset(symbols)
        return self._frozen.setdefault(fs, fs)

    def release(self) -> None:
        """Drop the caches of every Earley set still reachable (from the initial set and the
        successor memo, through the origins of their pieces), which hold pieces and items
        pointing back at the set: reference cycles that only the cyclic GC would free. Sets
        stay valid (caches are rebuilt on demand); called when an automaton is done with them
        (freed or reset), so that its sets are freed by reference counting."""
        todo = [self.initial, *self._scans.values(), *self._unions.values()]
        seen = {id(s) for s in todo}
        while todo:
            state = todo.pop()
            for piece in state.pieces:
                if id(piece.origin) not in seen:
                    seen.add(id(piece.origin))
                    todo.append(piece.origin)
            state._pieces_from = {}
            state._waiting_for = {}
            state._items = state._waiting = None

    def intern(self, state: "ParserState") -> "ParserState":
        """The set already made of `state`'s live pieces, if one is alive; else `state`.
        Pieces of finished items only are left out: their completions are done, and they
        never act again (the one trace they leave, a finished start item, is `accepting`)."""
        if not self.interning:
            return state
        key = (state.accepting, *sorted(id(p) for p in state.pieces if p.waiting or p.by_terminal))
        got = self._interned.get(key)
        if got is None:
            self._interned[key] = got = state
        return got

    def union(self, sets: Sequence["ParserState"]) -> "ParserState":
        return ParserState.union(self, sets)

    def prediction(self, nts: frozenset[int]) -> "Prediction":
        """The items an Earley set predicts for these nonterminals (origin: the set itself)."""
        pred = self._predictions.get(nts)
        if pred is None:
            pred = self._predictions[nts] = Prediction(self, nts)
        return pred


class _Closures(dict):
    """Nonterminal -> the nonterminals predicted with it, each computed on first lookup."""

    def __init__(self, direct: dict[int, set[int]]) -> None:
        super().__init__()
        self._direct = direct

    def __missing__(self, nt: int) -> frozenset[int]:
        seen, todo = {nt}, [nt]
        while todo:
            for nxt in self._direct.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        self[nt] = out = frozenset(seen)
        return out


class Prediction:
    """The predicted part of an Earley set — items (rule, dot) whose origin is the set itself —
    which depends only on the nonterminals predicted, so sets share it: building a set only
    walks its kernel (items carried over from earlier sets)."""

    __slots__ = ("nts", "items", "waiting", "expected", "by_terminal")

    def __init__(self, parser: EarleyParser, nts: frozenset[int]) -> None:
        rules, nullable, nt = parser.rules, parser.nullable, parser.n_terminals
        self.nts = nts
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


class _Piece:
    """Items of an Earley set begun in one earlier set (`origin`), indexed once: sets are
    unions of pieces, and pieces are shared (the completions of one nonterminal begun in one
    set are the same in every later set that completes it).

    Items are kept as (rule, dot) pairs of ints beside the one origin: tuples and dicts of
    ints are untracked by the cyclic GC, so a piece costs it one object, not one per item and
    index entry (fresh masks create tens of thousands of pieces)."""

    __slots__ = ("origin", "items", "waiting", "by_terminal", "expected", "predicted",
                 "accepting", "completes")

    def __init__(self, parser: EarleyParser, origin: "ParserState",
                 items: Sequence[tuple[int, int]], completes: int = -1) -> None:
        """`completes`: the nonterminal whose completion in `origin` comes with this piece
        (an item's own piece, where its rule can be complete), or -1."""
        rules, nt, closure = parser.rules, parser.n_terminals, parser.closure_nts
        waiting: dict[int, list[tuple[int, int]]] = {}
        by_terminal: dict[int, list[tuple[int, int]]] = {}
        predicted: set[int] = set()
        accepting = False
        for item in items:
            rule, dot = item
            lhs, rhs = rules[rule]
            if dot < len(rhs):
                sym = rhs[dot]
                if sym >= nt:
                    waiting.setdefault(sym, []).append(item)
                    predicted |= closure[sym]
                else:
                    by_terminal.setdefault(sym, []).append((rule, dot + 1))
            elif lhs == parser.cfg.start:
                accepting = True
        root = parser.__dict__.get("initial")
        self.origin = origin
        self.items = tuple(items)
        self.waiting = {sym: tuple(got) for sym, got in waiting.items()}
        self.by_terminal = {t: tuple(got) for t, got in by_terminal.items()}
        self.expected = parser.frozen(by_terminal)
        self.predicted = parser.frozen(predicted)
        self.accepting = accepting and origin is root and root is not None
        self.completes = completes


class _TooDeep(Exception):
    pass


class ParserState:
    """One Earley set. `expected` holds the terminals that may come next.

    Items are kept in two parts: those derived from the kernel (any origin), as a union of
    shared pieces, and the shared `Prediction` (origin: this set), materialized on demand.
    Scanning builds a set from cached pieces: each kernel item's own piece (the item and the
    items past nullable symbols after it) and, where it completes, the completion of its
    left-hand side in its origin set, cached there per nonterminal.
    """

    __slots__ = ("parser", "pieces", "prediction", "expected", "accepting", "serial",
                 "_waiting_for", "_items", "_waiting", "_pieces_from",
                 "__weakref__")
    # The parser memoizes successors weakly (by `serial`): a history someone still holds maps
    # to one object, while sets nothing refers to any more (explored, not taken) can be freed.

    def __init__(self, parser: EarleyParser, kernel: Sequence[Item]) -> None:
        """The set closing `kernel` (origin None: the set itself) with the plain item walk."""
        rules, nullable, nt = parser.rules, parser.nullable, parser.n_terminals
        closure = parser.closure_nts
        items: set[tuple[int, int, ParserState]] = set()
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
                    if sym not in predicted:
                        predicted |= closure[sym]
                    if sym in nullable:  # Aycock–Horspool: step over nullable symbols at once
                        agenda.append((rule, dot + 1, origin))
                continue
            if origin is self:
                continue  # nullable completions inside this set are handled above
            for r2, d2, o2 in origin.waiting_for(lhs):
                agenda.append((r2, d2 + 1, o2))
        by_origin: dict[ParserState, list[tuple[int, int]]] = {}
        for rule, dot, origin in items:
            by_origin.setdefault(origin, []).append((rule, dot))
        pieces = tuple(_Piece(parser, o, got) for o, got in by_origin.items())
        self._setup(parser, pieces, frozenset(predicted))
        start = parser.cfg.start
        root = parser.__dict__.get("initial", self)  # while building the initial state: itself
        # Only the initial set can hold a finished start item whose origin is itself, and
        # those come from its kernel or its prediction (a nullable start symbol).
        self.accepting = any(
            rules[rule][0] == start and dot == len(rules[rule][1]) and origin is root
            for rule, dot, origin in (self.items if root is self else items)
        )

    def _setup(self, parser: EarleyParser, pieces: tuple[_Piece, ...],
               predicted: frozenset[int]) -> None:
        self.parser = parser
        self.pieces = pieces
        self.serial = next(parser._serials)
        self._waiting_for: dict[int, tuple[tuple[int, int, ParserState], ...]] = {}
        self._items: frozenset[tuple[int, int, ParserState]] | None = None
        self._waiting: dict[int, tuple[tuple[int, int, ParserState], ...]] | None = None
        # Pieces later sets get from here, in one dict (one object fewer for the cyclic GC):
        # per nonterminal, its completion; per (rule, dot), that item's own piece.
        self._pieces_from: dict[int | tuple[int, int], tuple[_Piece, ...] | _Piece] = {}
        self.prediction = pred = parser.prediction(predicted)
        if len(pieces) == 1 and not pieces[0].expected:
            self.expected = pred.expected
        else:
            self.expected = parser.frozen(pred.expected.union(*(p.expected for p in pieces)))

    @classmethod
    def _of_pieces(cls, parser: EarleyParser, pieces: tuple[_Piece, ...],
                   accepting: bool | None = None) -> "ParserState":
        self = object.__new__(cls)
        if len(pieces) == 1:
            predicted = pieces[0].predicted
        else:
            predicted = parser.frozen(frozenset().union(*(p.predicted for p in pieces)))
        self._setup(parser, pieces, predicted)
        self.accepting = any(p.accepting for p in pieces) if accepting is None else accepting
        return self

    @classmethod
    def union(cls, parser: EarleyParser, sets: Sequence["ParserState"]) -> "ParserState":
        """One set standing for several at the same position: its continuations are theirs
        together (items keep their origins; the predictions are redone in the union).
        Memoized (weakly) per parser, like `scan`."""
        key = tuple(sorted(s.serial for s in sets))
        union = parser._unions.get(key)
        if union is None:
            pieces = tuple(dict.fromkeys(p for s in sets for p in s.pieces))
            union = parser._unions[key] = parser.intern(cls._of_pieces(
                parser, pieces, any(s.accepting for s in sets)))
        return union

    def waiting_for(self, sym: int) -> tuple[tuple[int, int, ParserState], ...]:
        """Items of this set whose dot is before nonterminal `sym`."""
        out = self._waiting_for.get(sym)
        if out is None:
            found: dict[tuple[int, int, ParserState], None] = {}
            for piece, got in self._waiting_groups(sym):
                o = piece.origin if piece is not None else self
                found.update(((r, d, o), None) for r, d in got)
            out = self._waiting_for[sym] = tuple(found)
        return out

    def _waiting_groups(
            self, sym: int) -> Iterator[tuple[_Piece | None, tuple[tuple[int, int], ...]]]:
        """(piece, its (rule, dot) items waiting for `sym`), the prediction's as piece None
        (origin: this set)."""
        for piece in self.pieces:
            got = piece.waiting.get(sym)
            if got:
                yield piece, got
        got = self.prediction.waiting.get(sym)
        if got:
            yield None, got

    def _add_pieces(self, out: dict[_Piece, None], rule: int, dot: int, depth: int) -> None:
        """Add to `out` the pieces a later set gets from item (rule, dot, self): the item and
        the items past the nullable symbols after it (one piece, cached here), and the
        completion of the rule's left-hand side here if it can be complete."""
        piece = self._pieces_from.get((rule, dot))
        if piece is None:
            parser = self.parser
            lhs, rhs = parser.rules[rule]
            own = [(rule, dot)]
            while dot < len(rhs) and rhs[dot] >= parser.n_terminals and rhs[dot] in parser.nullable:
                dot += 1
                own.append((rule, dot))
            piece = self._pieces_from[own[0]] = _Piece(parser, self, own,
                                                       lhs if dot == len(rhs) else -1)
        out[piece] = None
        if piece.completes >= 0:
            out.update(dict.fromkeys(self._completion(piece.completes, depth + 1)))

    def _completion(self, sym: int, depth: int) -> tuple[_Piece, ...]:
        """The pieces a later set gets from completing `sym` begun here."""
        got = self._pieces_from.get(sym)
        if got is None:
            if depth > self.parser.MAX_NESTING:
                raise _TooDeep
            out: dict[_Piece, None] = {}
            for piece, items in self._waiting_groups(sym):
                o = piece.origin if piece is not None else self
                for r, d in items:
                    o._add_pieces(out, r, d + 1, depth)
            got = self._pieces_from[sym] = tuple(out)
        return got

    @property
    def items(self) -> frozenset[tuple[int, int, ParserState]]:
        if self._items is None:
            self._items = frozenset(
                [(r, d, p.origin) for p in self.pieces for r, d in p.items]
                + [(r, d, self) for r, d in self.prediction.items])
        return self._items

    @property
    def waiting(self) -> dict[int, tuple[tuple[int, int, ParserState], ...]]:
        if self._waiting is None:
            syms = set(self.prediction.waiting).union(*(p.waiting for p in self.pieces))
            self._waiting = {sym: self.waiting_for(sym) for sym in syms}
        return self._waiting

    def scan(self, terminal: int) -> ParserState | None:
        """The state after `terminal`, or None if it cannot come next (memoized)."""
        if terminal not in self.expected:
            return None
        key = (self.serial, terminal)
        nxt = self.parser._scans.get(key)
        if nxt is None:
            # The kernel: items advanced over the terminal, grouped by origin.
            kernel = [(p.origin, got) for p in self.pieces if (got := p.by_terminal.get(terminal))]
            got = self.prediction.by_terminal.get(terminal)
            if got:
                kernel.append((self, got))
            nxt = None
            if self.parser.fast:
                try:
                    pieces: dict[_Piece, None] = {}
                    for o, got in kernel:
                        for r, d in got:
                            o._add_pieces(pieces, r, d, 0)
                    nxt = ParserState._of_pieces(self.parser, tuple(pieces))
                except _TooDeep:
                    nxt = None
            if nxt is None:
                nxt = ParserState(self.parser, list(dict.fromkeys(
                    (r, d, o) for o, got in kernel for r, d in got)))
            self.parser._scans[key] = nxt = self.parser.intern(nxt)
        return nxt

    def __repr__(self) -> str:
        names = self.parser.cfg.terminal_names
        return f"ParserState(expected={sorted(names[t] for t in self.expected)}, accepting={self.accepting})"


def derived(rules: Sequence[tuple[int, tuple[int, ...]]], given: Callable[[int], bool]
            ) -> set[int]:
    """The symbols some rule derives from symbols that are `given` or derived themselves (the
    least fixpoint: nullable nonterminals with nothing given, productive ones with terminals
    given). A worklist visits each rule once per symbol of its right side: schema grammars
    have thousands of rules, and passes over all of them until nothing changes took tens."""
    missing: list[int] = []  # per rule: symbols of its right side not yet known to hold
    waiting: dict[int, list[int]] = {}
    done: set[int] = set()
    todo: list[int] = []
    for i, (lhs, rhs) in enumerate(rules):
        need = {s for s in rhs if not given(s)}
        missing.append(len(need))
        for s in need:
            waiting.setdefault(s, []).append(i)
        if not need and lhs not in done:
            done.add(lhs)
            todo.append(lhs)
    while todo:
        for i in waiting.get(todo.pop(), ()):
            missing[i] -= 1
            lhs = rules[i][0]
            if not missing[i] and lhs not in done:
                done.add(lhs)
                todo.append(lhs)
    return done
