"""A parsed regex (interegular's pattern tree) → its character DFA, by the position (Glushkov)
construction and the subset construction.

interegular's own `to_fsm` builds the DFA bottom-up, one product crawl per concatenation and
alternation, so a pattern nested n deep is crawled n times over: an identifier that excludes
forty keywords, spelled as a trie of alternations, took ~0.35 s. Here every character-class
occurrence is a position, with the positions that may follow it, computed in one pass over the
tree; a DFA state is the set of positions just read, built only when reached, so each state is
made once. The result is an interegular `FSM` over the pattern's own alphabet, as `to_fsm`'s.
"""
from __future__ import annotations

from interegular.fsm import FSM, Alphabet, anything_else
from interegular.patterns import (
    Pattern,
    REFlags,
    Unsupported,
    _DOT,
    _EMPTY,
    _CharGroup,
    _Concatenation,
    _NonCapturing,
    _Repeated,
)

# (nullable, first positions, last positions) of a subpattern
_Node = tuple[bool, frozenset[int], frozenset[int]]
_EMPTY_NODE: _Node = (True, frozenset(), frozenset())


# `.` as a class: any character but a newline, or (flag s) any character at all
_NOT_NEWLINE = _CharGroup(frozenset("\n"), True)
_ANY = _CharGroup(frozenset(), True)


class _Positions:
    """The positions of one pattern: per position the class it reads and the positions that
    may follow it, found in one pass over the tree."""

    def __init__(self) -> None:
        self.classes: list[_CharGroup] = []
        self.follow: list[set[int]] = []

    def _position(self, group: _CharGroup) -> _Node:
        p = len(self.classes)
        self.classes.append(group)
        self.follow.append(set())
        one = frozenset((p,))
        return (False, one, one)

    def _concat(self, a: _Node, b: _Node) -> _Node:
        for p in a[2]:
            self.follow[p] |= b[1]
        return (a[0] and b[0], a[1] | b[1] if a[0] else a[1], a[2] | b[2] if b[0] else b[2])

    def _star(self, a: _Node) -> _Node:
        for p in a[2]:
            self.follow[p] |= a[1]
        return (True, a[1], a[2])

    def build(self, node, flags: REFlags) -> _Node:
        """The (nullable, first, last) of `node`, adding its positions."""
        if isinstance(node, Pattern):
            flags = (flags | node.added_flags) & ~node.removed_flags
            if flags & ~REFlags.SINGLE_LINE:
                raise Unsupported(f"flags {flags}")
            out = (False, frozenset(), frozenset())
            for option in node.options:
                n = self.build(option, flags)
                out = (out[0] or n[0], out[1] | n[1], out[2] | n[2])
            return out
        if isinstance(node, _Concatenation):
            out = _EMPTY_NODE
            for part in node.parts:
                if isinstance(part, _NonCapturing):
                    raise Unsupported("lookaround")
                out = self._concat(out, self.build(part, flags))
            return out
        if isinstance(node, _Repeated):
            out = _EMPTY_NODE
            for _ in range(node.min):
                out = self._concat(out, self.build(node.base, flags))
            if node.max is None:
                return self._concat(out, self._star(self.build(node.base, flags)))
            rest = _EMPTY_NODE  # x{0,k} as (x(x(...)?)?)?, one copy of x per step
            for _ in range(node.max - node.min):
                n = self._concat(self.build(node.base, flags), rest)
                rest = (True, n[1], n[2])
            return self._concat(out, rest)
        if isinstance(node, _CharGroup):
            return self._position(node)
        if isinstance(node, type(_EMPTY)):
            return _EMPTY_NODE
        if isinstance(node, type(_DOT)):
            return self._position(_ANY if flags & REFlags.SINGLE_LINE else _NOT_NEWLINE)
        raise Unsupported(f"pattern element {type(node).__name__}")

    def symbols(self) -> tuple[Alphabet, list[int]]:
        """The alphabet — characters read by exactly the same classes share a symbol, every
        other character is `anything_else`'s — and per position the symbols it reads, as a bit
        mask (0: a class nothing matches). interegular's `get_alphabet` merges the alphabets of
        every subpattern level by level, which on deep patterns costs more than the DFA."""
        groups = list(dict.fromkeys(c.chars for c in self.classes))
        member: dict[str, list[int]] = {}
        for i, chars in enumerate(groups):
            for ch in chars:
                member.setdefault(ch, []).append(i)
        keys: dict[tuple[int, ...], int] = {(): 0}
        mapping: dict = {anything_else: 0}
        for ch, of in member.items():
            mapping[ch] = keys.setdefault(tuple(of), len(keys))
        every = (1 << len(keys)) - 1
        masks: dict[_CharGroup, int] = {}  # repeats copy classes; a Unicode one may be large
        for c in dict.fromkeys(self.classes):
            mask = 0
            for symbol in {mapping[ch] for ch in c.chars}:
                mask |= 1 << symbol
            masks[c] = every & ~mask if c.negated else mask
        return Alphabet(mapping), [masks[c] for c in self.classes]


def _classes(candidates: list[int], symbols: list[int]) -> list[tuple[int, list[int]]]:
    """The symbols some candidate reads, split into classes read by the same candidates:
    (symbol mask, those candidates). Candidates reading the same symbols (copies of one class
    under a repeat, say) refine the split once."""
    same: dict[int, list[int]] = {}
    for q in candidates:
        same.setdefault(symbols[q], []).append(q)
    classes: list[tuple[int, list[int]]] = []
    for m, group in same.items():
        rest = m
        split: list[tuple[int, list[int]]] = []
        for cm, qs in classes:
            both = cm & m
            if not both:
                split.append((cm, qs))
                continue
            if both != cm:
                split.append((cm & ~m, qs))
            split.append((both, qs + group))
            rest &= ~cm
        if rest:
            split.append((rest, group))
        classes = split
    return classes


def to_fsm(pattern: Pattern) -> FSM:
    """The DFA of `pattern`: the language interegular's `pattern.to_fsm()` builds (with the
    flags structgen passes it: `s` only), over an alphabet that partitions characters alike."""
    pos = _Positions()
    nullable, first, last = pos.build(pattern, REFlags(0))
    alphabet, symbols = pos.symbols()
    follow = pos.follow
    numbers: dict[frozenset[int] | None, int] = {None: 0}  # None: nothing read yet
    todo: list[frozenset[int] | None] = [None]
    finals = {0} if nullable else set()
    transitions: dict[int, dict[int, int]] = {}
    while todo:
        state = todo.pop()
        source = numbers[state]
        if state is None:
            candidates = sorted(first)
        else:
            reach: set[int] = set()
            for p in state:
                reach |= follow[p]
            candidates = sorted(reach)
        row: dict[int, int] = {}
        for mask, qs in _classes(candidates, symbols):
            target_set = frozenset(qs)
            target = numbers.get(target_set)
            if target is None:
                target = numbers[target_set] = len(numbers)
                todo.append(target_set)
                if not target_set.isdisjoint(last):
                    finals.add(target)
            while mask:
                bit = mask & -mask
                row[bit.bit_length() - 1] = target
                mask ^= bit
        transitions[source] = row
    return FSM(alphabet=alphabet, states=set(range(len(numbers))), initial=0, finals=finals,
               map=transitions, __no_validation__=True)
