"""JSON Schema (draft 2020-12) → `CompiledGrammar`: exact, or refused with keyword and pointer.

Two steps. **Normalisation** turns every subschema into a `Node`: a union of typed parts
(`Null`, `Bool`, `Num`, `Str`, `Arr`, `Obj`, and `Ref` to another node), where every keyword
of one schema is intersected into the parts (allOf merges by intersection, anyOf is union,
oneOf a union of provably disjoint branches — or of `Bi ∧ ¬Bj…` where complements are exact —,
`not` an exact complement where one exists, if/then/else `(I ∧ T) ∪ (¬I ∧ E)`). Subschemas are
referenced lazily (`Ref`), and intersections/complements of references are memoized, so
recursive schemas close into finitely many nodes. **Emission** turns nodes into CFG rules with
one terminal per lexeme: punctuation, object keys (`json_string_dfa(literals=[key])`, so any
escape spelling of a key is accepted), string and number values (byte DFAs from `lexemes`).

Parts are frozen dataclasses: equal schemas share one nonterminal and one terminal.
"""
from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from functools import reduce
from typing import Any, Callable, ClassVar, Hashable, Iterable, Sequence

import numpy as np

from ..automata.bytedfa import (DEAD, ByteDFA, EndlessStates, byte_classes, dfa_product,
                                reversed_edges, trim)
from ..automata.earley import CFG
from ..automata.grammar import CompiledGrammar, _productive_rules
from ..automata.regex import regex_to_dfa
from ..errors import RegexError, SchemaError, UnsupportedSchemaError
from .lexemes import json_number_dfa, json_string_dfa
from .resolve import Location, Resolver, check_schema

# Formats named by the 2020-12 specification: asserted (when format assertion is on) or refused
# by the lexeme builder; any other value of `format` is an annotation and ignored, as the
# specification requires for unknown formats.
SPEC_FORMATS = frozenset({
    "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname",
    "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
    "json-pointer", "relative-json-pointer", "regex",
})
# One flexible whitespace run: at most this many bytes at each place JSON allows whitespace.
# Enough for a newline plus indentation 15 levels deep at 2 spaces, while a model that starts
# looping on whitespace is stopped after a few tokens instead of filling its budget.
FLEXIBLE_WHITESPACE = r"[ \t\n\r]{1,32}"
MAX_SUBSET_STATES = 5000  # any-order objects / uniqueItems: subset states (2^12 key sets and a few)
MAX_COUNTER_STATES = 20_000  # array positions × contains counts, objects' (property, count)
MAX_PATTERNS = 6  # distinct patternProperties/additionalProperties key regions (2^n regions)
MAX_UNION = 256  # parts of one node after distributing intersections over unions
MAX_NODES = 50_000  # memoized intersections/complements of references
MAX_UNIQUE_DOMAIN = 10  # uniqueItems: distinct item values enumerated exactly
# The terminal opening an array whose items the unique-items tracker keeps distinct
# (`structgen.constraints.json_unique`): it reads "[" like the plain one, and tells the tracker
# which arrays to watch.
UNIQUE_OPEN = "'[' unique items"
# Terminals named with this prefix and a number N: plain strings with a maxLength N of at least
# CAP_FROM. Their DFA leaves the bound out and the length tracker
# (`structgen.constraints.json_lengths`) counts code points instead: an exact DFA has a state
# per code point counted (maxLength 1024: 20k states, ~0.5 s to build, more past ~8,000 than
# any DFA may have), and each count read is a new state whose first mask walks the vocabulary.
CAPPED = "string, code points at most "
CAP_FROM = 16


# --- the normal form -------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    """A union of typed parts; `parts is None` means any JSON value, `()` no value."""

    parts: tuple | None


ANY = Node(None)
NEVER = Node(())


@dataclass(frozen=True)
class Null:
    pass


@dataclass(frozen=True)
class Bool:
    values: frozenset[bool] = frozenset({True, False})


@dataclass(frozen=True)
class Num:
    """Numbers in [lo, hi] (each bound optional, maybe exclusive), integers only if `integer`,
    excluding those any `negated` part accepts."""

    integer: bool = False
    lo: int | float | None = None
    lo_excl: bool = False
    hi: int | float | None = None
    hi_excl: bool = False
    multiple_of: int | float | None = None
    negated: tuple["Num", ...] = ()
    pointer: str = field(default="", compare=False)
    plain: bool = False  # draft 4's "integer": spelled without fraction or exponent (1.0 is not)


@dataclass(frozen=True)
class Str:
    """Strings satisfying every constraint; `literals` (when set) is the whole language and the
    other fields are then empty; strings matching any `negated` part are excluded."""

    min_len: int = 0
    max_len: int | None = None
    patterns: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    literals: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    negated: tuple["Str", ...] = ()
    pointer: str = field(default="", compare=False)


@dataclass(frozen=True)
class Arr:
    """Arrays: element i satisfies prefix[i] (then `items`); `contains` counts matching items."""

    prefix: tuple[Node, ...]
    items: Node
    min_items: int = 0
    max_items: int | None = None
    contains: Node | None = None
    min_contains: int = 1
    max_contains: int | None = None
    unique: bool = False
    pointer: str = field(default="", compare=False)


@dataclass(frozen=True)
class Obj:
    """Objects. `props` holds every key named anywhere (its value already intersected with all
    that applies to it); a key outside `props` gets the nodes of the `patterns` it matches
    (ECMA-262 search) and of each fallback `(patterns, node)` none of whose patterns it matches
    (additionalProperties / unevaluatedProperties). `names` constrains every key."""

    props: tuple[tuple[str, Node], ...] = ()
    required: frozenset[str] = frozenset()
    patterns: tuple[tuple[str, Node], ...] = ()
    fallbacks: tuple[tuple[tuple[str, ...], Node], ...] = ()
    names: Node = ANY
    min_props: int = 0
    max_props: int | None = None
    pointer: str = field(default="", compare=False)


@dataclass(frozen=True)
class Ref:
    """A node defined elsewhere (a subschema location, or a memoized intersection/complement)."""

    key: Hashable


def _all_parts() -> tuple:
    return (Null(), Bool(), Num(), Str(), Arr((), ANY), Obj())


_KINDS = (Null, Bool, Num, Str, Arr, Obj)


def _others(kind: type) -> tuple:
    """Unconstrained parts of every JSON type except `kind` (numbers: Num covers integers)."""
    return tuple(p for p in _all_parts() if not isinstance(p, kind))


def _search(pattern: str, text: str) -> bool:
    """Whether `text` matches `pattern` (ECMA-262 search, as the specification says): decided
    by the DFA the grammar uses for free strings, so named keys and literals agree with it."""
    return json_string_dfa(pattern=pattern).accepts(json.dumps(text).encode())


def _check_pattern(pattern: str, keyword: str, pointer: str) -> None:
    """Refuse (under `keyword`) a pattern the lexeme builder cannot enforce exactly."""
    try:
        json_string_dfa(pattern=pattern)
    except UnsupportedSchemaError as e:
        raise UnsupportedSchemaError(keyword, e.reason, pointer) from None


def _grows_until_accepted(dfa: ByteDFA) -> bool:
    """Whether infinitely many byte strings lead to acceptance from every state reachable
    that is not accepting (the DFA is trimmed: every state can still accept)."""
    endless = EndlessStates(dfa)
    seen, todo = {dfa.initial}, [dfa.initial]
    while todo:
        s = todo.pop()
        if not dfa.accepting[s] and s not in endless:
            return False
        row = dfa.transitions[s]
        for t in set(row[row >= 0].tolist()) - seen:
            seen.add(t)
            todo.append(t)
    return True


def _num_key(v: Any) -> Fraction:
    return Fraction(Decimal(repr(v))) if isinstance(v, float) else Fraction(v)


# --- normalisation ---------------------------------------------------------------------------

class _Cycle(Exception):
    """A memoized node was needed while being computed (a reference cycle)."""


class Normaliser:
    """Subschema locations → nodes; intersections, unions, complements of nodes (memoized)."""

    def __init__(self, resolver: Resolver, *, lenient: bool, format_assertion: bool,
                 warnings: list[str], canonical: bool = False) -> None:
        self.resolver = resolver
        self.canonical = canonical  # one spelling per value (see `open_values`)
        self.lenient = lenient
        self.format_assertion = format_assertion
        self.warnings = warnings
        self.locations: dict[Hashable, Location] = {}
        self.defs: dict[Hashable, Node] = {}
        self.busy: set[Hashable] = set()

    # references ---------------------------------------------------------------------------

    def ref(self, loc: Location) -> Node:
        """A lazy reference to the node of `loc` (booleans inline)."""
        if loc.contents is True:
            return ANY
        if loc.contents is False:
            return NEVER
        key = ("loc",) + loc.key
        self.locations.setdefault(key, loc)
        return Node((Ref(key),))

    def expand(self, key: Hashable) -> Node:
        """The node a reference stands for (computed once)."""
        node = self.defs.get(key)
        if node is not None:
            return node
        if key in self.busy:
            raise _Cycle(key)
        if len(self.defs) > MAX_NODES:
            raise UnsupportedSchemaError("$ref", f"more than {MAX_NODES} distinct combinations "
                                         "of subschemas: the schema is too large to compile")
        self.busy.add(key)
        try:
            if key[0] == "loc":
                node = self.compile_location(self.locations[key])
            elif key[0] == "meet":
                node = reduce(self.intersect, (self._atom(a) for a in key[1]), ANY)
            else:  # ("not", key)
                node = self.complement(self.expand(key[1]), "")
        finally:
            self.busy.discard(key)
        self.defs[key] = node
        return node

    def _atom(self, atom: Hashable) -> Node:
        return self.expand(atom) if isinstance(atom, tuple) else atom

    def _lazy(self, key: Hashable) -> Node:
        """The node of `key` now if it can be computed, else a reference tying a cycle."""
        if key in self.busy:
            return Node((Ref(key),))
        try:
            node = self.expand(key)
        except _Cycle:
            return Node((Ref(key),))
        # keep nodes shallow (cheap to hash), but let emptiness and "any" show at once
        return node if node.parts is None or node.parts == () else Node((Ref(key),))

    # set operations -------------------------------------------------------------------------

    def union(self, nodes: Iterable[Node]) -> Node:
        parts: list = []
        for n in nodes:
            if n.parts is None:
                return ANY
            for p in n.parts:
                if p not in parts:
                    parts.append(p)
        return Node(tuple(parts))

    def intersect(self, a: Node, b: Node) -> Node:
        if a.parts is None:
            return b
        if b.parts is None or a == b:
            return a
        out: list = []
        for p in a.parts:
            for q in b.parts:
                r = self._intersect_parts(p, q)
                for x in (r.parts if r.parts is not None else _all_parts()):
                    if x not in out:
                        out.append(x)
                if len(out) > MAX_UNION:
                    raise UnsupportedSchemaError(
                        "allOf", f"intersecting these subschemas gives more than {MAX_UNION} "
                        "alternatives", getattr(p, "pointer", ""))
        return Node(tuple(out))

    def _intersect_parts(self, p: Any, q: Any) -> Node:
        if isinstance(p, Ref) or isinstance(q, Ref):
            # ordered: the merged object lists properties in order of first appearance
            atoms: list = []
            for x in (p, q):
                new = x.key[1] if isinstance(x, Ref) and x.key[0] == "meet" else (
                    x.key if isinstance(x, Ref) else Node((x,)),)
                atoms += [a for a in new if a not in atoms]
            if len(atoms) == 1:
                return Node((p,))
            return self._lazy(("meet", tuple(atoms)))
        if type(p) is not type(q):
            return NEVER
        merged = getattr(self, "_merge_" + type(p).__name__.lower())(p, q)
        return NEVER if merged is None else Node((merged,))

    def _merge_null(self, p: Null, q: Null) -> Null:
        return p

    def _merge_bool(self, p: Bool, q: Bool) -> Bool | None:
        values = p.values & q.values
        return Bool(values) if values else None

    def _merge_num(self, p: Num, q: Num) -> Num | None:
        lo, lo_excl = p.lo, p.lo_excl
        if q.lo is not None and (lo is None or q.lo > lo or (q.lo == lo and q.lo_excl)):
            lo, lo_excl = q.lo, q.lo_excl
        hi, hi_excl = p.hi, p.hi_excl
        if q.hi is not None and (hi is None or q.hi < hi or (q.hi == hi and q.hi_excl)):
            hi, hi_excl = q.hi, q.hi_excl
        mult = p.multiple_of
        if q.multiple_of is not None and mult is not None and q.multiple_of != mult:
            a, b = _num_key(mult), _num_key(q.multiple_of)
            if (a / b).denominator == 1:
                pass
            elif (b / a).denominator == 1:
                mult = q.multiple_of
            elif isinstance(mult, int) and isinstance(q.multiple_of, int):
                mult = math.lcm(mult, q.multiple_of)  # integers: both divide x iff the lcm does
            else:
                raise UnsupportedSchemaError(
                    "multipleOf", f"multipleOf {mult} and {q.multiple_of} together (neither "
                    "divides the other)", q.pointer or p.pointer)
        elif mult is None:
            mult = q.multiple_of
        return _settle_num(Num(p.integer or q.integer, lo, lo_excl, hi, hi_excl, mult,
                               _dedupe(p.negated + q.negated), p.pointer or q.pointer,
                               p.plain or q.plain))

    def _merge_str(self, p: Str, q: Str) -> Str | None:
        literals = p.literals if q.literals is None else (
            q.literals if p.literals is None else p.literals & q.literals)
        merged = Str(max(p.min_len, q.min_len),
                     q.max_len if p.max_len is None else p.max_len if q.max_len is None
                     else min(p.max_len, q.max_len),
                     _dedupe(p.patterns + q.patterns), _dedupe(p.formats + q.formats), literals,
                     p.exclude | q.exclude, _dedupe(p.negated + q.negated), p.pointer or q.pointer)
        return self.settle_str(merged)

    def settle_str(self, s: Str) -> Str | None:
        """Empty → None; a literal set absorbs every other constraint (checked per literal)."""
        if s.max_len is not None and s.min_len > s.max_len:
            return None
        if s.literals is None:
            return s
        kept = frozenset(v for v in s.literals if self.str_accepts(s, v))
        return Str(literals=kept, pointer=s.pointer) if kept else None

    def str_accepts(self, s: Str, value: str) -> bool:
        """Whether the string part accepts `value` (evaluated directly, as jsonschema would)."""
        n = len(value)
        if n < s.min_len or (s.max_len is not None and n > s.max_len):
            return False
        if s.literals is not None and value not in s.literals:
            return False
        if value in s.exclude or any(self.str_accepts(x, value) for x in s.negated):
            return False
        if not all(_search(p, value) for p in s.patterns):
            return False
        for f in s.formats:
            if not _format_accepts(f, value):
                return False
        return True

    def _merge_arr(self, p: Arr, q: Arr) -> Arr | None:
        n = max(len(p.prefix), len(q.prefix))
        prefix = tuple(
            self.intersect(p.prefix[i] if i < len(p.prefix) else p.items,
                           q.prefix[i] if i < len(q.prefix) else q.items)
            for i in range(n))
        items = self.intersect(p.items, q.items)
        contains, mc, xc = p.contains, p.min_contains, p.max_contains
        if q.contains is not None:
            if contains is None:
                contains, mc, xc = q.contains, q.min_contains, q.max_contains
            elif contains == q.contains:
                mc = max(mc, q.min_contains)
                xc = q.max_contains if xc is None else xc if q.max_contains is None else min(
                    xc, q.max_contains)
            else:
                raise UnsupportedSchemaError("contains", "two different contains subschemas "
                                             "on one array", q.pointer or p.pointer)
        return _settle_arr(Arr(prefix, items, max(p.min_items, q.min_items),
                               _min_opt(p.max_items, q.max_items), contains, mc, xc,
                               p.unique or q.unique, p.pointer or q.pointer))

    def _merge_obj(self, p: Obj, q: Obj) -> Obj | None:
        keys = list(dict(p.props)) + [k for k, _ in q.props if k not in dict(p.props)]
        props = tuple((k, self.intersect(self.value_for(p, k), self.value_for(q, k)))
                      for k in keys)
        return self.make_obj(props, p.required | q.required, p.patterns + q.patterns,
                             p.fallbacks + q.fallbacks, self.intersect(p.names, q.names),
                             max(p.min_props, q.min_props), _min_opt(p.max_props, q.max_props),
                             p.pointer or q.pointer)

    def value_for(self, o: Obj, key: str) -> Node:
        """The node a property named `key` must satisfy in `o`."""
        for k, v in o.props:
            if k == key:
                return v
        nodes = [v for p, v in o.patterns if _search(p, key)]
        nodes += [v for pats, v in o.fallbacks if not any(_search(p, key) for p in pats)]
        return reduce(self.intersect, nodes, ANY)

    def make_obj(self, props: Sequence[tuple[str, Node]], required: frozenset[str],
                 patterns: tuple, fallbacks: tuple, names: Node, min_props: int,
                 max_props: int | None, pointer: str) -> Obj | None:
        """An object part with every required key named; None when provably empty."""
        base = Obj(tuple(props), required, patterns, fallbacks, names, min_props, max_props,
                   pointer)
        named = dict(props)
        extra = [(k, self.value_for(base, k)) for k in sorted(required) if k not in named]
        props = tuple(props) + tuple(extra)
        if any(v == NEVER for k, v in props if k in required):
            return None
        if max_props is not None and (max_props < min_props or max_props < len(required)):
            return None
        return replace(base, props=props)

    # complement -----------------------------------------------------------------------------

    def complement(self, node: Node, pointer: str) -> Node:
        """The JSON values `node` rejects, or UnsupportedSchemaError("not") when not exact."""
        if node.parts is None:
            return NEVER
        out = ANY
        for part in node.parts:
            out = self.intersect(out, self._complement_part(part, pointer))
        return out

    def _complement_part(self, p: Any, pointer: str) -> Node:
        if isinstance(p, Ref):
            return self._lazy(("not", p.key))
        others = _others(type(p))
        if p in _all_parts():  # unconstrained: every other type
            return Node(others)
        if isinstance(p, Bool):
            return Node(others + (Bool(frozenset({True, False}) - p.values),))
        if isinstance(p, Num):
            if p.integer or p.multiple_of is not None or p.negated:
                return Node(others + (Num(negated=(p,), pointer=p.pointer),))
            parts: list = list(others)
            if p.lo is not None:
                parts.append(Num(hi=p.lo, hi_excl=not p.lo_excl, pointer=p.pointer))
            if p.hi is not None:
                parts.append(Num(lo=p.hi, lo_excl=not p.hi_excl, pointer=p.pointer))
            return Node(tuple(parts))
        if isinstance(p, Str):
            if p.literals is not None:
                return Node(others + (Str(exclude=p.literals, pointer=p.pointer),))
            return Node(others + (Str(negated=(p,), pointer=p.pointer),))
        if isinstance(p, Arr):
            return Node(others + self._complement_arr(p, pointer))
        return Node(others + self._complement_obj(p, pointer))

    def _complement_arr(self, p: Arr, pointer: str) -> tuple:
        if p.unique:
            raise UnsupportedSchemaError("not", "arrays with a duplicate (not uniqueItems) cannot "
                                         "be enforced", pointer)
        out: list = []
        if p.min_items > 0:
            out.append(Arr((), ANY, max_items=p.min_items - 1))
        if p.max_items is not None:
            out.append(Arr((), ANY, min_items=p.max_items + 1))
        for i, node in enumerate(p.prefix):
            if node.parts is not None:
                out.append(Arr((ANY,) * i + (self.complement(node, pointer),), ANY,
                               min_items=i + 1))
        if p.items.parts is not None:
            if p.prefix:
                raise UnsupportedSchemaError("not", "the complement of items after prefixItems "
                                             "cannot be enforced", pointer)
            out.append(Arr((), ANY, contains=self.complement(p.items, pointer)))
        if p.contains is not None:
            if p.min_contains > 0:
                out.append(Arr((), ANY, contains=p.contains, min_contains=0,
                               max_contains=p.min_contains - 1))
            if p.max_contains is not None:
                out.append(Arr((), ANY, contains=p.contains, min_contains=p.max_contains + 1))
        return tuple(x for x in (_settle_arr(a) for a in out) if x is not None)

    def _complement_obj(self, p: Obj, pointer: str) -> tuple:
        if p.patterns or p.fallbacks or p.names.parts is not None:
            raise UnsupportedSchemaError(
                "not", "the complement of patternProperties, additionalProperties, "
                "unevaluatedProperties or propertyNames (some key failing) cannot be enforced",
                pointer)
        out: list = []
        for k in sorted(p.required):
            out.append(Obj(props=((k, NEVER),)))
        for k, v in p.props:
            if v.parts is not None:
                out.append(self.make_obj(((k, self.complement(v, pointer)),), frozenset({k}),
                                         (), (), ANY, 0, None, p.pointer))
        if p.min_props > 0:
            out.append(Obj(max_props=p.min_props - 1))
        if p.max_props is not None:
            out.append(Obj(min_props=p.max_props + 1))
        return tuple(x for x in out if x is not None)

    # emptiness ------------------------------------------------------------------------------

    def provably_empty(self, node: Node, depth: int = 4) -> bool:
        """True only when `node` certainly accepts no value (False = unknown or non-empty)."""
        if node.parts is None:
            return False
        for p in node.parts:
            if isinstance(p, Ref):
                if depth == 0:
                    return False
                try:
                    if not self.provably_empty(self.expand(p.key), depth - 1):
                        return False
                except _Cycle:
                    return False
            elif isinstance(p, Obj):
                if not any(k in p.required and self.provably_empty(v, depth - 1)
                           for k, v in p.props):
                    return False
            elif isinstance(p, Arr):
                if not any(self.provably_empty(v, depth - 1)
                           for v in p.prefix[: p.min_items]):
                    return False
            else:
                return False
        return True

    def finite_values(self, node: Node, pointer: str, depth: int = 8) -> dict[Hashable, Node]:
        """Equality key → single-value node for each value of a finite scalar node, or
        UnsupportedSchemaError("uniqueItems") when the node is not such a set."""
        def refuse() -> UnsupportedSchemaError:
            return UnsupportedSchemaError(
                "uniqueItems", "items are not drawn from a small finite set of scalars, so "
                "uniqueness cannot be enforced by a grammar", pointer)

        if node.parts is None:
            raise refuse()
        out: dict[Hashable, Node] = {}
        for p in node.parts:
            if isinstance(p, Ref):
                if depth == 0:
                    raise refuse()
                out.update(self.finite_values(self.expand(p.key), pointer, depth - 1))
            elif isinstance(p, Null):
                out[("lit", None)] = Node((p,))
            elif isinstance(p, Bool):
                for v in p.values:
                    out[("lit", v)] = Node((Bool(frozenset({v})),))
            elif isinstance(p, Str) and p.literals is not None:
                for v in p.literals:
                    out[("str", v)] = Node((Str(literals=frozenset({v}), pointer=p.pointer),))
            elif (isinstance(p, Num) and p.lo is not None and p.lo == p.hi and not p.lo_excl
                  and not p.hi_excl):
                out[("num", _num_key(p.lo))] = Node((p,))
            else:
                raise refuse()
        return out

    def unique_domains(self, a: Arr, max_items: int | None
                       ) -> tuple[list[dict[Hashable, Node]], bool]:
        """How uniqueItems is enforced on `a`: (per leading item position, its values —
        equality key → single-value node —, whether the unique-items tracker is needed). All
        positions drawing from at most MAX_UNIQUE_DOMAIN scalars: the grammar alone tracks the
        set used (the last position's values repeat). Else the positions after those must all
        have open values (`open_values`): the grammar tracks the leading ones, the tracker keeps
        every item distinct. Anything else: UnsupportedSchemaError."""
        positions = len(a.prefix) + 1
        if max_items is not None and max_items <= len(a.prefix):
            positions = max_items
        elements = [a.prefix[i] if i < len(a.prefix) else a.items for i in range(positions)]
        domains: list[dict[Hashable, Node]] = []
        for e in elements:
            try:
                domains.append(self.finite_values(e, a.pointer))
            except UnsupportedSchemaError:
                break
        small = len({k for d in domains for k in d}) <= MAX_UNIQUE_DOMAIN
        if small and len(domains) == len(elements):
            return domains, False
        if small and all(self.open_values(e) for e in elements[len(domains):] if e != NEVER):
            return domains, True
        raise UnsupportedSchemaError(
            "uniqueItems", f"items are neither drawn from at most {MAX_UNIQUE_DOMAIN} scalars "
            "nor open (any value, strings that can always grow, unbounded numbers — integers "
            "in canonical spelling —, objects and arrays that take any further entry), so "
            "uniqueness cannot be enforced exactly", a.pointer)

    def open_values(self, node: Node, depth: int = 8) -> bool:
        """Whether distinct values of `node` can be kept apart by the unique-items tracker
        alone: the node has infinitely many values, and any text that does not yet fix one can
        still grow into infinitely many — a value is fixed only at its first byte (null, true,
        false), its closing quote or bracket, or the byte after a number, where the tracker
        checks it. Then refusing a duplicate there never strands the output. So: any value,
        unbounded non-integer numbers, strings whose DFA can grow from every state before the
        closing quote, objects that take any further key and arrays any further item (with a
        value that surely exists), unbounded integers in canonical spelling (fixed where the
        text cannot go on), with null and booleans beside them; not closed objects or bounded
        arrays (their last entry can be forced), bounded numbers or finite strings."""
        if node.parts is None:
            return True
        infinite = False
        for p in node.parts:
            if isinstance(p, Ref):
                if depth == 0 or not self.open_values(self.expand(p.key), depth - 1):
                    return False
                infinite = True
            elif isinstance(p, (Null, Bool)):
                continue
            elif isinstance(p, Num):
                # an integer is fixed where its text cannot go on (`0`), which the tracker
                # sees; spelled any way it can be fixed before (`1e-` is 1: `1e-0`, `1e-00`)
                if p.lo is not None or p.hi is not None or p.multiple_of or p.negated or (
                        p.integer and not self.canonical):
                    return False
                infinite = True
            elif isinstance(p, Str):
                if p.literals is not None or p.negated or len(p.patterns) > 1 or len(p.formats) > 1:
                    return False
                dfa = json_string_dfa(pattern=p.patterns[0] if p.patterns else None,
                                      format=p.formats[0] if p.formats else None,
                                      min_length=p.min_len, max_length=p.max_len,
                                      exclude=sorted(p.exclude))
                if not dfa.is_empty():
                    if not _grows_until_accepted(dfa):
                        return False
                    infinite = True
            elif isinstance(p, Obj):  # open if a further key may always follow
                if (p.max_props is not None or p.patterns or p.names.parts is not None
                        or len(p.fallbacks) > 1
                        or not all(self.surely_nonempty(v) for _, v in p.fallbacks)):
                    return False
                infinite = True
            elif isinstance(p, Arr):  # open if a further item may always follow
                if (p.max_items is not None or p.contains is not None or p.unique
                        or not all(map(self.surely_nonempty, (*p.prefix, p.items)))):
                    return False
                infinite = True
            else:
                return False
        return infinite

    def surely_nonempty(self, node: Node, depth: int = 8) -> bool:
        """Whether `node` has a value for certain (an unconstrained scalar part), so that the
        grammar keeps its rules: a cheap sufficient test, False when unsure."""
        if node.parts is None:
            return True
        for p in node.parts:
            if isinstance(p, Ref):
                if depth and self.surely_nonempty(self.expand(p.key), depth - 1):
                    return True
            elif isinstance(p, Null) or (isinstance(p, Bool) and p.values):
                return True
            elif isinstance(p, Num) and p.lo is None and p.hi is None and not (
                    p.multiple_of or p.negated):
                return True
            elif isinstance(p, Str) and p.literals is None and not (
                    p.patterns or p.formats or p.negated) and (
                    p.max_len is None or p.max_len >= p.min_len):
                return True
        return False

    # schema objects → nodes --------------------------------------------------------------

    def compile_location(self, loc: Location) -> Node:
        c = loc.contents
        if c is True:
            return ANY
        if c is False:
            return NEVER
        if not isinstance(c, dict):
            raise SchemaError("a schema must be an object or a boolean", loc.pointer)
        if self.resolver.dialect != "draft2020" or "dependencies" in c:
            loc = upgrade(loc, self.resolver.dialect, self.resolver)
            c = loc.contents
        node = ANY
        for group in _GROUPS:
            if any(k in c for k in group.keywords):
                node = self._apply(loc, node, group)
        return node

    def _apply(self, loc: Location, node: Node, group: "_Group") -> Node:
        dropped: set[str] = set()
        while True:
            try:
                return self.intersect(node, group.build(self, loc, dropped))
            except UnsupportedSchemaError as e:
                if not self.lenient or e.keyword not in group.keywords or e.keyword in dropped:
                    raise
                dropped.add(e.keyword)
                self.warnings.append(f"{e.keyword} at {e.pointer or '/'}: {e.reason} — dropped")

    def literal(self, value: Any, pointer: str) -> Node:
        """The node accepting exactly `value` (numbers by value, objects in any key order)."""
        if value is None:
            return Node((Null(),))
        if isinstance(value, bool):
            return Node((Bool(frozenset({value})),))
        if isinstance(value, (int, float)):
            return Node((Num(lo=value, hi=value, pointer=pointer),))
        if isinstance(value, str):
            return Node((Str(literals=frozenset({value}), pointer=pointer),))
        if isinstance(value, list):
            return Node((Arr(tuple(self.literal(v, pointer) for v in value), NEVER,
                             min_items=len(value), pointer=pointer),))
        obj = self.make_obj(tuple((k, self.literal(v, pointer)) for k, v in value.items()),
                            frozenset(value), (), (((), NEVER),), ANY, 0, None, pointer)
        return Node((obj,)) if obj is not None else NEVER


def _dedupe(items: tuple) -> tuple:
    return tuple(dict.fromkeys(items))


def _min_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _settle_num(n: Num) -> Num | None:
    if n.lo is not None and n.hi is not None:
        if n.lo > n.hi or (n.lo == n.hi and (n.lo_excl or n.hi_excl)):
            return None
        if n.integer and math.isfinite(n.lo) and math.isfinite(n.hi):
            first = math.ceil(n.lo) if not n.lo_excl else math.floor(n.lo) + 1
            last = math.ceil(n.hi) - 1 if n.hi_excl else math.floor(n.hi)
            if first > last:
                return None
    return n


def _settle_arr(a: Arr) -> Arr | None:
    if a.max_items is not None and a.min_items > a.max_items:
        return None
    if a.contains is not None and a.max_contains is not None and a.min_contains > a.max_contains:
        return None
    if a.contains is not None and a.max_items is not None and a.min_contains > a.max_items:
        return None
    return a


def _format_accepts(fmt: str, value: str) -> bool:
    """Whether a string literal satisfies `fmt`, with the same DFA the generator uses."""
    return json_string_dfa(format=fmt).accepts(json.dumps(value).encode())


# --- older drafts ----------------------------------------------------------------------------

# Keywords each older draft does not have (they are annotations there, so ignored).
_NEWER = {
    "draft4": {"const", "contains", "propertyNames", "if", "then", "else", "examples"},
    "draft6": {"if", "then", "else"},
    "draft7": set(),
    "draft2019": set(),
}
_SINCE_2019 = {"dependentRequired", "dependentSchemas", "unevaluatedProperties",
               "unevaluatedItems", "minContains", "maxContains", "$anchor"}
_SINCE_2020 = {"prefixItems", "$dynamicRef", "$dynamicAnchor"}


# Draft 4 defines "integer" by spelling ("a JSON number without a fraction or exponent part"),
# so 1.0 is not one there; read as this private type name (never seen in a real schema).
_DRAFT4_INTEGER = "integer (draft 4)"
_PLAIN_INTEGER = r"-?(?:0|[1-9][0-9]*)"


def upgrade(loc: Location, dialect: str, resolver: Resolver) -> Location:
    """A draft 4/6/7/2019-09 schema object read as the 2020-12 keywords meaning the same
    (subschemas stay the same objects, so references and memoization are unaffected)."""
    c = loc.contents
    if dialect == "draft2020":  # only `dependencies`, kept for compatibility (a narrowing
        # where jsonschema ignores it; the official suite's optional tests expect it)
        out = {k: v for k, v in c.items() if k != "dependencies"}
        _split_dependencies(c["dependencies"], out)
        return replace(loc, contents=out)
    if dialect != "draft2019" and "$ref" in c:  # before 2019-09, $ref ignores its siblings
        return replace(loc, contents={"$ref": c["$ref"]})
    dropped = _NEWER[dialect] | _SINCE_2020 | (set() if dialect == "draft2019" else _SINCE_2019)
    out = {k: v for k, v in c.items() if k not in dropped}
    if dialect == "draft4":
        types = out.get("type")
        if types == "integer" or (isinstance(types, list) and "integer" in types):
            out["type"] = (_DRAFT4_INTEGER if types == "integer" else
                           [_DRAFT4_INTEGER if t == "integer" else t for t in types])
        for bound, excl in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
            if out.pop(excl, False) is True and bound in out:
                out[excl] = out.pop(bound)
    if isinstance(c.get("items"), list):
        out["prefixItems"] = c["items"]
        out.pop("items")
        if "additionalItems" in c:
            out["items"] = c["additionalItems"]
    if dialect != "draft2019" and "dependencies" in c:
        _split_dependencies(c["dependencies"], out)
    if dialect == "draft2019" and "$recursiveRef" in c:
        if resolver.has_recursive_anchor():
            raise UnsupportedSchemaError("$recursiveRef", "$recursiveAnchor makes the target "
                                         "depend on the dynamic scope", loc.pointer)
        out["$ref"] = c["$recursiveRef"]
    return replace(loc, contents=out)


def _split_dependencies(dependencies: dict, out: dict) -> None:
    """`dependencies` (before 2019-09) as dependentRequired / dependentSchemas."""
    for k, v in dependencies.items():
        key = "dependentRequired" if isinstance(v, list) else "dependentSchemas"
        out[key] = {**out.get(key, {}), k: v}


# --- keyword groups -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Group:
    keywords: frozenset[str]
    build: Callable[[Normaliser, Location, set], Node]


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _type_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    if "type" in dropped:
        return ANY
    types = loc.contents["type"]
    types = [types] if isinstance(types, str) else types
    make = {"null": Null(), "boolean": Bool(), "number": Num(), "integer": Num(integer=True),
            _DRAFT4_INTEGER: Num(integer=True, plain=True),
            "string": Str(), "array": Arr((), ANY), "object": Obj()}
    return n.union(Node((make[t],)) for t in types)


def _const_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    c = loc.contents
    node = ANY
    if "const" in c and "const" not in dropped:
        node = n.literal(c["const"], loc.pointer + "/const")
    if "enum" in c and "enum" not in dropped:
        node = n.intersect(node, n.union(n.literal(v, f"{loc.pointer}/enum/{i}")
                                         for i, v in enumerate(c["enum"])))
    return node


def _numeric_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    c = {k: v for k, v in loc.contents.items() if k not in dropped}
    num = Num(pointer=loc.pointer)
    for key, lo_side, excl in (("minimum", True, False), ("exclusiveMinimum", True, True),
                               ("maximum", False, False), ("exclusiveMaximum", False, True)):
        if key in c:
            bound = Num(lo=c[key], lo_excl=excl) if lo_side else Num(hi=c[key], hi_excl=excl)
            merged = n._merge_num(num, replace(bound, pointer=f"{loc.pointer}/{key}"))
            if merged is None:
                return Node(_others(Num))
            num = merged
    if "multipleOf" in c:
        merged = n._merge_num(num, Num(multiple_of=c["multipleOf"],
                                       pointer=f"{loc.pointer}/multipleOf"))
        if merged is None:
            return Node(_others(Num))
        num = merged
    return Node(_others(Num) + (num,))


def _string_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    c = {k: v for k, v in loc.contents.items() if k not in dropped}
    patterns: tuple[str, ...] = ()
    if "pattern" in c:
        _check_pattern(c["pattern"], "pattern", loc.pointer + "/pattern")
        patterns = (c["pattern"],)
    formats: tuple[str, ...] = ()
    if "format" in c and n.format_assertion and c["format"] in SPEC_FORMATS:
        formats = (c["format"],)
    s = n.settle_str(Str(int(c.get("minLength", 0)),
                         None if c.get("maxLength") is None else int(c["maxLength"]),
                         patterns, formats, pointer=loc.pointer))
    return Node(_others(Str) + ((s,) if s is not None else ()))


def _array_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    c = {k: v for k, v in loc.contents.items() if k not in dropped}
    prefix = tuple(n.ref(child) for _, child in loc.children("prefixItems")) \
        if "prefixItems" in c else ()
    items = n.ref(loc.child("items")) if "items" in c else ANY
    contains = n.ref(loc.child("contains")) if "contains" in c else None
    mc = int(c.get("minContains", 1))
    xc = None if c.get("maxContains") is None else int(c["maxContains"])
    if contains is not None and mc == 0 and xc is None:
        contains = None
    unique = bool(c.get("uniqueItems", False))
    a = _settle_arr(Arr(prefix, items, int(c.get("minItems", 0)),
                        None if c.get("maxItems") is None else int(c["maxItems"]),
                        contains, mc, xc, unique, loc.pointer))
    if a is not None and unique and (a.max_items is None or a.max_items > 1):
        # refuse now (so lenient mode can drop the keyword) unless it can be enforced
        if contains is not None:
            raise UnsupportedSchemaError("uniqueItems", "uniqueItems together with contains",
                                         loc.pointer)
        try:
            n.unique_domains(a, a.max_items)
        except _Cycle:
            raise UnsupportedSchemaError("uniqueItems", "recursive item schema",
                                         loc.pointer) from None
    return Node(_others(Arr) + ((a,) if a is not None else ()))


def _object_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    c = {k: v for k, v in loc.contents.items() if k not in dropped}
    patterns = tuple((p, n.ref(child)) for p, child in loc.children("patternProperties")) \
        if "patternProperties" in c else ()
    for p, _ in patterns:
        _check_pattern(p, "patternProperties", loc.pointer + "/patternProperties")
    named = list(c.get("properties", {}))
    fallbacks: tuple = ()
    if "additionalProperties" in c:
        fallbacks = ((tuple(p for p, _ in patterns), n.ref(loc.child("additionalProperties"))),)
    props = []
    for k in named:
        value = n.intersect(n.ref(loc.child("properties", k)),
                            reduce(n.intersect, [v for p, v in patterns if _search(p, k)], ANY))
        props.append((k, value))
    names = n.ref(loc.child("propertyNames")) if "propertyNames" in c else ANY
    obj = n.make_obj(props, frozenset(c.get("required", ())), patterns,
                     tuple((pats, v) for pats, v in fallbacks), names,
                     int(c.get("minProperties", 0)),
                     None if c.get("maxProperties") is None else int(c["maxProperties"]),
                     loc.pointer)
    # Properties named in `properties` are excluded from additionalProperties by name: the
    # fallback's own names are exactly `props`, which `value_for` never routes to fallbacks.
    return Node(_others(Obj) + ((obj,) if obj is not None else ()))


def _dependent_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    c = loc.contents
    node = ANY
    for k, needed in ({} if "dependentRequired" in dropped else
                      c.get("dependentRequired", {})).items():
        absent = Obj(props=((k, NEVER),))
        present = n.make_obj((), frozenset({k, *needed}), (), (), ANY, 0, None, loc.pointer)
        node = n.intersect(node, Node(_others(Obj) + tuple(x for x in (absent, present) if x)))
    if "dependentSchemas" in c and "dependentSchemas" not in dropped:
        for k, child in loc.children("dependentSchemas"):
            absent = Node((Obj(props=((k, NEVER),)),))
            present = n.intersect(Node((n.make_obj((), frozenset({k}), (), (), ANY, 0, None,
                                                   loc.pointer),)), n.ref(child))
            node = n.intersect(node, n.union([Node(_others(Obj)), absent, present]))
    return node


def _applicator_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    c = loc.contents
    node = ANY
    for key in ("$ref", "$dynamicRef"):
        if key in c and key not in dropped:
            node = n.intersect(node, n.ref(n.resolver.lookup(loc, key)))
    if "allOf" in c and "allOf" not in dropped:
        for _, child in loc.children("allOf"):
            node = n.intersect(node, n.ref(child))
    if "anyOf" in c and "anyOf" not in dropped:
        node = n.intersect(node, n.union(n.ref(child) for _, child in loc.children("anyOf")))
    if "oneOf" in c and "oneOf" not in dropped:
        node = n.intersect(node, _one_of(n, loc))
    if "not" in c and "not" not in dropped:
        inner, negations = loc.child("not"), 1
        while isinstance(inner.contents, dict) and set(inner.contents) - _ANNOTATIONS == {"not"}:
            inner, negations = inner.child("not"), negations + 1  # not-not-X is X exactly
        node = n.intersect(node, n.ref(inner) if negations % 2 == 0 else
                           n.complement(n.ref(inner), inner.pointer))
    if "if" in c and "if" not in dropped and ("then" in c or "else" in c):
        cond = n.ref(loc.child("if"))
        then = n.ref(loc.child("then")) if "then" in c else ANY
        other = n.ref(loc.child("else")) if "else" in c else ANY
        not_cond = n.complement(cond, loc.pointer + "/if")
        if other.parts is None:  # (I ∧ T) ∪ ¬I = T ∪ ¬I
            branch = n.union([then, not_cond])
        elif then.parts is None:  # I ∪ (¬I ∧ E) = I ∪ E
            branch = n.union([cond, other])
        else:
            branch = n.union([n.intersect(cond, then), n.intersect(not_cond, other)])
        node = n.intersect(node, branch)
    return node


_ANNOTATIONS = frozenset({"title", "description", "$comment", "default", "examples",
                          "deprecated", "readOnly", "writeOnly"})


def _one_of(n: Normaliser, loc: Location) -> Node:
    branches = [n.ref(child) for _, child in loc.children("oneOf")]
    pointer = loc.pointer + "/oneOf"
    if all(n.provably_empty(n.intersect(a, b))
           for i, a in enumerate(branches) for b in branches[i + 1:]):
        return n.union(branches)
    try:  # exactly one: Bi ∧ ¬Bj for every j ≠ i
        negs = [n.complement(b, pointer) for b in branches]
        return n.union(reduce(n.intersect, [negs[j] for j in range(len(branches)) if j != i], b)
                       for i, b in enumerate(branches))
    except UnsupportedSchemaError:
        raise UnsupportedSchemaError(
            "oneOf", "the branches may overlap (not provably disjoint) and their complements "
            "cannot be enforced exactly", pointer) from None


def _unevaluated_group(n: Normaliser, loc: Location, dropped: set) -> Node:
    """unevaluatedProperties/Items as a union over evaluation scenarios: each scenario is a
    condition (which subschemas validate) and what they then evaluate statically; the rest of
    the schema is enforced by the other groups. See `_scenarios` for why this is exact."""
    c = loc.contents
    node = ANY
    for keyword, kind in (("unevaluatedProperties", "properties"), ("unevaluatedItems", "items")):
        if keyword not in c or keyword in dropped:
            continue
        rest = n.ref(loc.child(keyword))
        parts = []
        for cond, spec in _scenarios(n, loc, kind, keyword, top=True):
            if kind == "properties":
                names, patterns, everything = spec
                if everything:
                    parts.append(cond)
                    continue
                obj = n.make_obj(tuple((k, ANY) for k in sorted(names)), frozenset(), (),
                                 ((tuple(sorted(patterns)), rest),), ANY, 0, None, loc.pointer)
                shape = Node(_others(Obj) + ((obj,) if obj else ()))
            else:
                prefix, everything = spec
                if everything:
                    parts.append(cond)
                    continue
                shape = Node(_others(Arr) + (Arr((ANY,) * prefix, rest),))
            parts.append(n.intersect(cond, shape))
        node = n.intersect(node, n.union(parts))
    return node


Spec = tuple  # properties: (names, patterns, everything); items: (prefix length, everything)
MAX_SCENARIOS = 64


def _join(kind: str, a: Spec, b: Spec) -> Spec:
    if kind == "properties":
        return (a[0] | b[0], a[1] | b[1], a[2] or b[2])
    return (max(a[0], b[0]), a[1] or b[1])


def _product(n: Normaliser, kind: str, xs: list, ys: list, keyword: str,
             pointer: str) -> list:
    out = [(n.intersect(c1, c2), _join(kind, s1, s2)) for c1, s1 in xs for c2, s2 in ys]
    out = [(c, s) for c, s in out if c != NEVER]
    if len(out) > MAX_SCENARIOS:
        raise UnsupportedSchemaError(keyword, f"more than {MAX_SCENARIOS} combinations of "
                                     "validating subschemas to track", pointer)
    return out


def _scenarios(n: Normaliser, loc: Location, kind: str, keyword: str, top: bool = False,
               depth: int = 0) -> list[tuple[Node, Spec]]:
    """(condition, evaluated) pairs covering every valid instance of `loc`: when the condition
    holds and the instance is valid, exactly `evaluated` (or more) was evaluated; every valid
    instance meets some condition. More evaluated means fewer unevaluated keys to check, so
    checking against any scenario whose condition holds is exact:
    anyOf → each non-empty subset of branches (the subset of all valid branches is one);
    oneOf → each branch (oneOf itself guarantees it is the only valid one);
    if → (if, if+then) and (not if, else); dependentSchemas → key absent / present;
    allOf and $ref → products. `not` evaluates nothing."""
    c = loc.contents
    empty: Spec = (frozenset(), frozenset(), False) if kind == "properties" else (0, False)
    if not isinstance(c, dict):
        return [(ANY, empty)]
    if depth > 16:
        raise UnsupportedSchemaError(keyword, "subschemas nested too deep to track what they "
                                     "evaluate", loc.pointer)
    if n.resolver.dialect != "draft2020":
        c = upgrade(loc, n.resolver.dialect, n.resolver).contents
    if kind == "properties":
        own: Spec = (frozenset(c.get("properties", {})), frozenset(c.get("patternProperties", {})),
                     "additionalProperties" in c or (not top and "unevaluatedProperties" in c))
    else:
        if "contains" in c:
            raise UnsupportedSchemaError(keyword, "items evaluated by contains depend on their "
                                         "values", loc.pointer + "/contains")
        own = (len(c.get("prefixItems", ())), "items" in c or (
            not top and "unevaluatedItems" in c))
    out = [(ANY, own)]
    if "$dynamicRef" in c:
        raise UnsupportedSchemaError(keyword, "$dynamicRef beside unevaluated keywords",
                                     loc.pointer)
    sub = lambda child: _scenarios(n, child, kind, keyword, depth=depth + 1)  # noqa: E731
    children = [child for _, child in loc.children("allOf")] if "allOf" in c else []
    if "$ref" in c:
        children.append(n.resolver.lookup(loc, "$ref"))
    for child in children:
        out = _product(n, kind, out, sub(child), keyword, loc.pointer)
    if "anyOf" in c:
        branches = [(n.ref(child), sub(child)) for _, child in loc.children("anyOf")]
        options: list = []
        for size in range(1, len(branches) + 1):
            for subset in itertools.combinations(branches, size):
                acc = [(ANY, empty)]
                for node, scen in subset:
                    acc = _product(n, kind, acc, [(n.intersect(node, cd), sp) for cd, sp in scen],
                                   keyword, loc.pointer)
                options += acc
                if len(options) > MAX_SCENARIOS:
                    raise UnsupportedSchemaError(keyword, f"more than {MAX_SCENARIOS} "
                                                 "combinations of anyOf branches", loc.pointer)
        out = _product(n, kind, out, options, keyword, loc.pointer)
    if "oneOf" in c:
        options = [(n.intersect(n.ref(child), cd), sp) for _, child in loc.children("oneOf")
                   for cd, sp in sub(child)]
        out = _product(n, kind, out, options, keyword, loc.pointer)
    if "if" in c:
        cond = n.ref(loc.child("if"))
        options = [(n.intersect(cond, cd), sp) for cd, sp in sub(loc.child("if"))]
        if "then" in c:
            options = _product(n, kind, options, sub(loc.child("then")), keyword, loc.pointer)
        negated = n.complement(cond, loc.pointer + "/if")
        options += ([(n.intersect(negated, cd), sp) for cd, sp in sub(loc.child("else"))]
                    if "else" in c else [(negated, empty)])
        out = _product(n, kind, out, options, keyword, loc.pointer)
    if "dependentSchemas" in c and kind == "properties":
        for k, child in loc.children("dependentSchemas"):
            absent = Node((Obj(props=((k, NEVER),)),) + _others(Obj))
            present = Node((Obj(required=frozenset({k}), props=((k, ANY),)),))
            options = [(absent, empty)] + [(n.intersect(present, cd), sp) for cd, sp in sub(child)]
            out = _product(n, kind, out, options, keyword, loc.pointer)
    return out


_GROUPS = (
    _Group(frozenset({"type"}), _type_group),
    _Group(frozenset({"const", "enum"}), _const_group),
    _Group(frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                      "multipleOf"}), _numeric_group),
    _Group(frozenset({"minLength", "maxLength", "pattern", "format"}), _string_group),
    _Group(frozenset({"prefixItems", "items", "minItems", "maxItems", "contains", "minContains",
                      "maxContains", "uniqueItems"}), _array_group),
    _Group(frozenset({"properties", "patternProperties", "additionalProperties", "required",
                      "propertyNames", "minProperties", "maxProperties"}), _object_group),
    _Group(frozenset({"dependentRequired", "dependentSchemas"}), _dependent_group),
    _Group(frozenset({"$ref", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if"}),
           _applicator_group),
    _Group(frozenset({"unevaluatedProperties", "unevaluatedItems"}), _unevaluated_group),
)


# --- emission: nodes → CFG rules over lexeme terminals --------------------------------------

_NT = 1 << 30  # nonterminal ids while building (renumbered after the terminals at the end)


class Emitter:
    """Builds the CFG: one nonterminal per distinct node/part, one terminal per distinct lexeme.

    Nodes are expanded from a work queue (not recursively), so deep and recursive schemas
    need no Python recursion; a reference is expanded the first time it is emitted.
    """

    def __init__(self, norm: Normaliser, *, whitespace: ByteDFA | None,
                 property_order: str, canonical: bool = False) -> None:
        self.norm = norm
        self.any_order = property_order == "any"
        self.canonical = canonical
        self.dfas: list[ByteDFA] = []
        self.term_names: list[str] = []
        self._terms: dict[Hashable, int | None] = {}
        self.nt_names: list[str] = []
        self.rules: list[tuple[int, tuple[int, ...]]] = []
        self._node_nts: dict[Node, int] = {}
        self._misc_nts: dict[Hashable, int] = {}
        self._queue: list[tuple[int, Any]] = []
        self._extras_memo: dict[Hashable, int | None] = {}
        # extra-entry nonterminal → its (key DFA, value node) regions, for counting distinct keys
        self._extras_regions: dict[int, list[tuple[ByteDFA, Node]]] = {}
        # (pointer, distinct keys needed, [(nonterminal, distinct keys it offers)]): checked once
        # productivity is known (an entry whose value derives nothing offers no key)
        self._pools: list[tuple[str, int, list[tuple[int, int]]]] = []
        self._offers_memo: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self._number_dfas: dict[Num, ByteDFA] = {}  # (negated parts recur across parts)
        # parts the trackers beside the grammar must tell apart by their terminal, with the
        # keyword to refuse: arrays opened by UNIQUE_OPEN, CAPPED strings
        self._watched: dict[Any, str] = {}
        self.ows: tuple[int, ...] = ()
        if whitespace is not None:
            ows = self._nt("ws?")
            self.rules += [(ows, ()), (ows, (self._term(("ws",), "WS", lambda: whitespace),))]
            self.ows = (ows,)
        self.comma = (*self.ows, self._lit(","), *self.ows)
        self.colon = (*self.ows, self._lit(":"), *self.ows)

    # symbols --------------------------------------------------------------------------------

    def _nt(self, name: str) -> int:
        self.nt_names.append(name)
        return _NT + len(self.nt_names) - 1

    def _term(self, key: Hashable, name: str, build: Callable[[], ByteDFA]) -> int | None:
        """The terminal for `key` (built once); None when its language is empty."""
        if key not in self._terms:
            dfa = build()
            if dfa.is_empty():
                self._terms[key] = None
            else:
                self._terms[key] = len(self.dfas)
                self.dfas.append(dfa)
                self.term_names.append(name)
        return self._terms[key]

    def _lit(self, text: str) -> int:
        sym = self._term(("lit", text), repr(text), lambda: regex_to_dfa(re.escape(text)))
        assert sym is not None
        return sym

    def _rule(self, lhs: int, rhs: Sequence[int | None]) -> None:
        if None not in rhs:
            self.rules.append((lhs, tuple(rhs)))  # type: ignore[arg-type]

    def value(self, node: Node) -> int:
        """Nonterminal deriving the JSON texts of `node` (rules built from the queue)."""
        nt = self._node_nts.get(node)
        if nt is None:
            nt = self._node_nts[node] = self._nt(_describe(node))
            self._queue.append((nt, node))
        return nt

    def _cached(self, key: Hashable, name: str, build: Callable[[int], None]) -> int:
        nt = self._misc_nts.get(key)
        if nt is None:
            nt = self._misc_nts[key] = self._nt(name)
            build(nt)
        return nt

    def run(self, root: Node) -> CompiledGrammar:
        start = self._nt("start")
        self._rule(start, (*self.ows, self.value(root), *self.ows))
        while self._queue:
            nt, node = self._queue.pop()
            self._emit_node(nt, node)
        if self._watched:
            self._check_watched()
        n_t = len(self.dfas)
        shift = n_t - _NT  # nonterminals follow the terminals
        remap = lambda s: s + shift if s >= _NT else s  # noqa: E731
        rules = [(lhs + shift, tuple([s + shift if s >= _NT else s for s in rhs]))
                 for lhs, rhs in self.rules]
        rules = _productive_rules(rules, n_t)
        productive = {lhs for lhs, _ in rules}
        for pointer, needed, offers in self._pools:
            if sum(n for nt, n in offers if remap(nt) in productive) < needed:
                raise UnsupportedSchemaError(
                    "minProperties", "some of the optional or additional properties counted "
                    "towards it can never be valid, so the count of distinct keys would not be "
                    "exact", pointer)
        cfg = CFG(n_t, tuple(rules), remap(start), tuple(self.term_names),
                  tuple(self.nt_names))
        # JSON lexemes are delimited (quotes, punctuation): few tokens leave them, and pruning
        # those with a free lexer built per schema made Gemma-3's first masks ~12x slower
        # (MaskBench: median 19 vs 1.5 ms) for the same total mask time.
        literal_keys = {t: key[1] for key, t in self._terms.items()
                        if key[0] == "key" and t is not None}
        return CompiledSchema(cfg, tuple(self.dfas), frozenset(), free_lexer=False,
                              literal_keys=literal_keys)

    def _check_watched(self) -> None:
        """Refuse watched parts (tracked arrays, capped strings) where the parser may follow
        two readings of one text, one inside a watched part and one not: a tracker learns what
        to watch from the terminal it reads, so that must be the same in every reading. A
        capped string whose bound an exact DFA can count takes that DFA there instead (it is
        then no longer watched, and the check runs again)."""
        while True:
            found = self._overlapping_watched()
            if found is None:
                return
            hit, why = found
            if not (isinstance(hit, Str) and self._uncap(hit)):
                keyword = self._watched.get(hit, "uniqueItems")
                what = ("a string with a large maxLength" if keyword == "maxLength" else
                        "an array with uniqueItems")
                raise UnsupportedSchemaError(keyword, f"{what} {why}", hit.pointer)

    def _uncap(self, s: Str) -> bool:
        """Give capped string `s` its exact DFA, bound included; False when that DFA would be
        too large (the caller then refuses the schema)."""
        try:
            dfa = self.string_dfa(s)
        except UnsupportedSchemaError as e:
            if e.keyword != "maxLength":
                raise
            return False
        term = self._terms[("capped", s)]
        assert term is not None
        self.dfas[term] = dfa
        self.term_names[term] = f"string{_brief(s)}"
        del self._watched[s]
        return True

    def _overlapping_watched(self) -> tuple[Any, str] | None:
        """A watched part where the parser may follow two readings, and why; None if none.
        Readings split only at a node with two alternatives of one type (two strings, or an
        object or array read against both) and inside the items of an array with `contains`
        (an item counted or not); alternatives of different types start with different bytes.
        A tracked array inside the items of another counts too (one is tracked at a time)."""
        kids: dict[Node, list[Node]] = {}  # every node reachable, with the nodes below it
        todo = list(self._node_nts)
        while todo:
            node = todo.pop()
            if node not in kids:
                kids[node] = [k for p in node.parts or () for k in self._children(p)]
                todo += kids[node]
        parents: dict[Node, list[Node]] = {}
        for node, below in kids.items():
            for k in below:
                parents.setdefault(k, []).append(node)

        def above(test: Callable[[Any], bool]) -> dict[Node, Any]:
            """Nodes with a part passing `test` at or below them, each with one such part."""
            found = {node: p for node in kids for p in node.parts or () if test(p)}
            todo = list(found)
            while todo:
                node = todo.pop()
                for up in parents.get(node, ()):
                    if up not in found:
                        found[up] = found[node]
                        todo.append(up)
            return found

        # any unique array counts (not only tracked ones), which errs on the side of refusing
        unique_below = above(lambda p: isinstance(p, Arr) and p.unique)
        watched_below = above(lambda p: p in self._watched or (isinstance(p, Arr) and p.unique))

        def watched(p: Any) -> Any:
            """The watched part that `p` is or holds, or None."""
            if p in self._watched or (isinstance(p, Arr) and p.unique):
                return p
            return next((watched_below[k] for k in self._children(p) if k in watched_below),
                        None)

        for node in kids:
            if node.parts is None:
                continue
            parts = self._flatten_any(node, "uniqueItems")
            for kind in (Arr, Obj, Str):
                same = [p for p in parts if p is None or isinstance(p, kind)]
                hit = next((h for p in same if p is not None and (h := watched(p))), None)
                if len(same) > 1 and hit is not None:
                    return hit, "inside one of several overlapping alternatives"
            for p in parts:
                if self._watched.get(p) == "uniqueItems" and any(
                        k in unique_below for k in self._children(p)):
                    return p, "inside the items of another"
                hit = watched(p) if isinstance(p, Arr) and p.contains is not None else None
                if hit is not None:
                    return hit, "inside the items of an array with contains"
        return None

    def _children(self, part: Any) -> list[Node]:
        """The nodes a part's values are read against (a reference: its node)."""
        if isinstance(part, Ref):
            return [self.norm.expand(part.key)]
        if isinstance(part, Arr):
            return [*part.prefix, part.items, *((part.contains,) if part.contains else ())]
        if isinstance(part, Obj):
            return [v for _, v in part.props + part.patterns] + [v for _, v in part.fallbacks]
        return []

    def _flatten_any(self, node: Node, keyword: str, pointer: str = "", depth: int = 16
                     ) -> list:
        """The alternatives of a node, references expanded; None for an unconstrained value
        (refused under `keyword` past `depth` references)."""
        if node.parts is None:
            return [None]
        out: list = []
        for p in node.parts:
            if isinstance(p, Ref):
                if depth == 0:
                    raise UnsupportedSchemaError(keyword, "reference nesting too deep", pointer)
                out += self._flatten_any(self.norm.expand(p.key), keyword, pointer, depth - 1)
            else:
                out.append(p)
        return out

    # nodes and parts ------------------------------------------------------------------------

    def _emit_node(self, nt: int, node: Node) -> None:
        if node.parts is None:
            for part in _all_parts():
                self._emit_part(nt, part)
            return
        for part in node.parts:
            self._emit_part(nt, part)

    def _emit_part(self, nt: int, part: Any) -> None:
        if isinstance(part, Ref):
            self._rule(nt, (self.value(self.norm.expand(part.key)),))
        elif isinstance(part, Null):
            self._rule(nt, (self._lit("null"),))
        elif isinstance(part, Bool):
            for v in sorted(part.values):
                self._rule(nt, (self._lit("true" if v else "false"),))
        elif isinstance(part, Num):
            self._rule(nt, (self._number(part),))
        elif isinstance(part, Str):
            self._rule(nt, (self._string(part),))
        elif isinstance(part, Arr):
            self._array(nt, part)
        else:
            self._object(nt, part)

    def _number(self, n: Num) -> int | None:
        return self._term(("num", n), "number" if n == Num() else f"number{_brief(n)}",
                          lambda: self.number_dfa(n))

    def number_dfa(self, n: Num) -> ByteDFA:
        """Byte DFA of one JSON number satisfying `n` (negations by product; memoized)."""
        dfa = self._number_dfas.get(n)
        if dfa is None:
            dfa = self._number_dfas[n] = self._build_number_dfa(n)
        return dfa

    def _build_number_dfa(self, n: Num) -> ByteDFA:
        kwargs: dict[str, Any] = {"integer": n.integer, "multiple_of": n.multiple_of}
        if n.lo is not None:
            kwargs["exclusive_minimum" if n.lo_excl else "minimum"] = n.lo
        if n.hi is not None:
            kwargs["exclusive_maximum" if n.hi_excl else "maximum"] = n.hi
        dfa = self._lexeme(json_number_dfa, kwargs, n.pointer)
        if n.plain:
            dfa = self._product(dfa, regex_to_dfa(_PLAIN_INTEGER), "and", "type", n.pointer)
        for neg in n.negated:
            dfa = self._product(dfa, self.number_dfa(neg), "andnot", "not", n.pointer)
        return dfa

    def _lexeme(self, fn: Callable[..., ByteDFA], kwargs: dict[str, Any],
                pointer: str) -> ByteDFA:
        """Call a lexeme builder; its refusals get the schema pointer (lenient: the refused
        keyword's argument is dropped, with a warning)."""
        params = {"multipleOf": "multiple_of", "minimum": "minimum", "maximum": "maximum",
                  "exclusiveMinimum": "exclusive_minimum", "exclusiveMaximum": "exclusive_maximum",
                  "pattern": "pattern", "format": "format", "minLength": "min_length",
                  "maxLength": "max_length"}
        if self.canonical and fn in (json_string_dfa, json_number_dfa):
            kwargs = {**kwargs, "canonical": True}
        while True:
            try:
                return fn(**kwargs)
            except UnsupportedSchemaError as e:
                arg = params.get(e.keyword)
                where = f"{pointer}/{e.keyword}"
                if not self.norm.lenient or arg not in kwargs:
                    raise e.at(where) from None
                self.norm.warnings.append(f"{e.keyword} at {where}: {e.reason} — dropped")
                kwargs = {k: v for k, v in kwargs.items() if k != arg}
                if arg == "min_length":
                    kwargs["min_length"] = 0

    def _product(self, a: ByteDFA, b: ByteDFA, op: str, keyword: str, pointer: str) -> ByteDFA:
        """`dfa_product`, refused (UnsupportedSchemaError naming `keyword`) past its state
        bound instead of spending minutes and gigabytes on it; lenient: an "and"/"andnot"
        operand `b` is dropped, with a warning."""
        try:
            return dfa_product(a, b, op)
        except OverflowError as e:
            reason = f"too large to enforce exactly: {e}"
            if not self.norm.lenient or op == "or":
                raise UnsupportedSchemaError(keyword, reason, pointer) from None
            self.norm.warnings.append(f"{keyword} at {pointer}/{keyword}: {reason} — dropped")
            return a

    def string_dfa(self, s: Str) -> ByteDFA:
        """Byte DFA of one JSON string satisfying `s` (patterns/formats/negations by product)."""
        if s.literals is not None:
            return self._lexeme(json_string_dfa, {"literals": sorted(s.literals)}, s.pointer)
        base: dict[str, Any] = {"min_length": s.min_len, "max_length": s.max_len,
                                "exclude": sorted(s.exclude)}
        if s.patterns:
            base["pattern"] = s.patterns[0]
        if s.formats:
            base["format"] = s.formats[0]
        dfa = self._lexeme(json_string_dfa, base, s.pointer)
        for p in s.patterns[1:]:
            dfa = self._product(dfa, self._lexeme(json_string_dfa, {"pattern": p}, s.pointer), "and",
                                "pattern", s.pointer)
        for f in s.formats[1:]:
            dfa = self._product(dfa, self._lexeme(json_string_dfa, {"format": f}, s.pointer), "and",
                                "format", s.pointer)
        for neg in s.negated:
            dfa = self._product(dfa, self.string_dfa(neg), "andnot", "not", s.pointer)
        return dfa

    def _string(self, s: Str) -> int | None:
        if (s.max_len is not None and CAP_FROM <= s.max_len and s.min_len <= s.max_len
                and s.literals is None and not (s.patterns or s.formats or s.negated
                                                or s.exclude)):
            # the length tracker counts the code points (the check of watched parts may
            # still give it its exact DFA)
            term = self._term(("capped", s), f"{CAPPED}{s.max_len}",
                              lambda: self.string_dfa(replace(s, max_len=None)))
            if term is not None:
                self._watched[s] = "maxLength"
            return term
        return self._term(("str", s), "string" if s == Str() else f"string{_brief(s)}",
                          lambda: self.string_dfa(s))

    # arrays -----------------------------------------------------------------------------------

    def _array(self, nt: int, a: Arr) -> None:
        open_, close = self._lit("["), self._lit("]")
        prefix, items = list(a.prefix), a.items
        max_items = a.max_items
        if items == NEVER:
            max_items = len(prefix) if max_items is None else min(max_items, len(prefix))
        domains: list[dict[Hashable, Node]] | None = None
        tracked = False
        if a.unique and (max_items is None or max_items > 1):
            if a.contains is not None:
                raise UnsupportedSchemaError("uniqueItems", "uniqueItems together with contains",
                                             a.pointer)
            domains, tracked = self.norm.unique_domains(a, max_items)
            if tracked:  # open items after the leading finite ones: the tracker keeps them apart
                open_ = self._term(("unique-open",), UNIQUE_OPEN,
                                   lambda: regex_to_dfa(re.escape("[")))  # type: ignore[assignment]
                self._watched[a] = "uniqueItems"
        if a.min_items == 0 and (a.contains is None or a.min_contains == 0):
            self._rule(nt, (open_, *self.ows, close))
        if max_items == 0:
            return
        element = lambda i: prefix[i] if i < len(prefix) else items  # noqa: E731
        if domains:
            rest = self._after(a, element, max_items, len(domains)) if tracked else None
            body = self._unique_body(a, max_items, domains, rest)
        elif a.contains is not None:
            body = self._contains_body(a, element, max_items)
        else:
            body = self._plain_body(a, element, max_items)
        self._rule(nt, (open_, *self.ows, body, *self.ows, close))

    def _plain_body(self, a: Arr, element: Callable[[int], Node], max_items: int | None) -> int:
        """One or more elements."""
        body = self._nt("items")
        self._rule(body, (self.value(element(0)), self._after(a, element, max_items, 1)))
        return body

    def _after(self, a: Arr, element: Callable[[int], Node], max_items: int | None,
               start: int) -> int:
        """The elements from position `start` on, each after a comma: positions up to the last
        that differs or is required, then a uniform tail bounded by maxItems."""
        fixed = max(len(a.prefix), a.min_items, start)
        if max_items is not None:
            fixed = min(fixed, max_items)
        if fixed > MAX_COUNTER_STATES:
            raise UnsupportedSchemaError("minItems", f"more than {MAX_COUNTER_STATES} array "
                                         "positions to track", a.pointer)
        tail_max = None if max_items is None else max_items - fixed
        unit = self._cached(("unit", element(fixed)), "next-item",
                            lambda u: self._rule(u, (*self.comma, self.value(element(fixed)))))
        nxt = self._up_to(unit, tail_max)
        for i in range(fixed - 1, start - 1, -1):  # position i (after a comma), then the rest
            here = self._nt(f"item{i}")
            if i >= a.min_items:
                self._rule(here, ())
            self._rule(here, (*self.comma, self.value(element(i)), nxt))
            nxt = here
        return nxt

    def _up_to(self, unit: int, count: int | None) -> int:
        """Zero to `count` repetitions of `unit` (None: unbounded); logarithmic for big counts."""
        def build(nt: int) -> None:
            self._rule(nt, ())
            if count is None:  # left-recursive: every repetition is parsed from the same
                self._rule(nt, (nt, unit))  # origin, so repeated positions are one Earley set
            elif count <= 64:
                if count > 0:
                    self._rule(nt, (unit, self._up_to(unit, count - 1)))
            else:
                self._rule(nt, (self._up_to(unit, count // 2),
                                self._up_to(unit, count - count // 2)))
        return self._cached(("upto", unit, count), f"upto{count}", build)

    def _contains_body(self, a: Arr, element: Callable[[int], Node],
                       max_items: int | None) -> int:
        """Elements labelled 'matches contains' or not; (position, count) states."""
        norm = self.norm
        assert a.contains is not None
        need_not = a.max_contains is not None
        not_c = norm.complement(a.contains, a.pointer + "/contains") if need_not else ANY
        last = max(len(a.prefix), a.min_items)
        if max_items is not None:
            last = max_items
        c_cap = a.max_contains + 1 if a.max_contains is not None else a.min_contains
        if (last + 1) * (c_cap + 1) > MAX_COUNTER_STATES:
            raise UnsupportedSchemaError("contains", "too many (position, count) states to "
                                         "track minContains/maxContains exactly", a.pointer)
        states: dict[tuple[int, int], int] = {}

        def state(i: int, c: int) -> int:
            key = (min(i, last), min(c, c_cap))
            if key not in states:
                states[key] = self._nt(f"contains{key}")
                pending.append(key)
            return states[key]

        pending: list[tuple[int, int]] = []
        body = self._nt("items")
        for is_c, node in ((True, a.contains), (False, not_c)):
            elem = norm.intersect(element(0), node)
            if is_c and (a.max_contains is not None and a.max_contains < 1):
                continue
            self._rule(body, (self.value(elem), state(1, int(is_c))))
        while pending:
            i, c = pending.pop()
            nt = states[(i, c)]
            if i >= a.min_items and c >= a.min_contains and (
                    a.max_contains is None or c <= a.max_contains):
                self._rule(nt, ())
            if max_items is not None and i >= max_items:
                continue
            for is_c, node in ((True, a.contains), (False, not_c)):
                if is_c and a.max_contains is not None and c + 1 > a.max_contains:
                    continue
                elem = norm.intersect(element(i), node)
                self._rule(nt, (*self.comma, self.value(elem), state(i + 1, c + int(is_c))))
        return body

    def _unique_body(self, a: Arr, max_items: int | None,
                     domains: list[dict[Hashable, Node]], rest: int | None = None) -> int:
        """uniqueItems over small finite item domains: states are the sets of values used.
        With `rest` (the elements after the finite positions, kept apart by the tracker), the
        positions beyond `domains` continue there."""
        positions = len(domains)
        states: dict[frozenset, int] = {}
        pending: list[frozenset] = []

        def state(used: frozenset) -> int:
            if used not in states:
                if len(states) >= MAX_SUBSET_STATES:
                    raise UnsupportedSchemaError("uniqueItems", "too many sets of used values",
                                                 a.pointer)
                states[used] = self._nt(f"unique{len(used)}")
                pending.append(used)
            return states[used]

        body = self._nt("items")
        for k, node in domains[0].items():
            self._rule(body, (self.value(node), state(frozenset({k}))))
        while pending:
            used = pending.pop()
            nt = states[used]
            if rest is not None and len(used) == positions:
                self._rule(nt, (rest,))
                continue
            if len(used) >= a.min_items:
                self._rule(nt, ())
            if max_items is not None and len(used) >= max_items:
                continue
            for k, node in domains[min(len(used), positions - 1)].items():
                if k not in used:
                    self._rule(nt, (*self.comma, self.value(node), state(used | {k})))
        return body

    # objects ----------------------------------------------------------------------------------

    def _names_dfa(self, o: Obj) -> ByteDFA | None:
        """DFA of the keys propertyNames allows (None: any key)."""
        if o.names.parts is None:
            return None
        strings = [Str() if p is None else p
                   for p in self._flatten_any(o.names, "propertyNames", o.pointer)]
        strings = [p for p in strings if isinstance(p, Str)]
        dfas = [self.string_dfa(s) for s in strings]
        if not dfas:
            return _EMPTY_DFA
        return reduce(lambda x, y: self._product(x, y, "or", "propertyNames", o.pointer), dfas)

    def _object(self, nt: int, o: Obj) -> None:
        open_, close = self._lit("{"), self._lit("}")
        names_dfa = self._names_dfa(o)
        named: list[tuple[str, Node]] = []
        for k, v in o.props:
            allowed = v != NEVER and (names_dfa is None or names_dfa.accepts(
                json.dumps(k).encode()))
            if allowed:
                named.append((k, v))
            elif k in o.required:
                return  # a required property that can never be present: no object
        required = {k for k, _ in named if k in o.required}
        extras = self._extras(o, names_dfa)
        lo, hi = o.min_props, o.max_props
        entries = {k: self._entry(k, v) for k, v in named}
        # Keys never repeat (the key tracker, structgen.constraints.json_keys, refuses repeats),
        # so minProperties beyond the required keys needs that many distinct other keys; where
        # the grammar asks for another entry one must exist, or the output could get stuck.
        needed = lo - len(required)
        if needed > 0:
            offers = [(entries[k], 1) for k, _ in named if k not in required]
            offers += self._extra_offers(extras, needed, o.pointer)
            if sum(n for _, n in offers) < needed:
                return  # not enough distinct keys: no such object
            if self.any_order:  # (in schema order, named keys are exact: only extras count)
                self._pools.append((o.pointer, needed, offers))
        if not required and lo == 0:
            self._rule(nt, (open_, *self.ows, close))
        body = (self._any_order(named, required, entries, extras, lo, hi, o.pointer)
                if self.any_order else
                self._in_order(named, required, entries, extras, lo, hi, o.pointer))
        self._rule(nt, (open_, *self.ows, body, *self.ows, close))

    def _entry(self, key: str, value: Node) -> int:
        def build(nt: int) -> None:
            term = self._term(("key", key), json.dumps(key),
                              lambda: json_string_dfa(literals=[key], canonical=self.canonical))
            self._rule(nt, (term, *self.colon, self.value(value)))
        return self._cached(("entry", key, value), json.dumps(key), build)

    def _extras(self, o: Obj, names_dfa: ByteDFA | None) -> int | None:
        """Nonterminal for one entry with a key outside `props` (None when none may appear);
        objects with the same names, patterns and fallbacks share it."""
        key = (tuple(sorted(k for k, _ in o.props)), o.patterns, o.fallbacks, o.names)
        if key not in self._extras_memo:
            self._extras_memo[key] = self._build_extras(o, names_dfa)
        return self._extras_memo[key]

    def _build_extras(self, o: Obj, names_dfa: ByteDFA | None) -> int | None:
        pats = _dedupe(tuple(p for p, _ in o.patterns) +
                       tuple(p for pats, _ in o.fallbacks for p in pats))
        if len(pats) > MAX_PATTERNS:
            raise UnsupportedSchemaError(
                "patternProperties", f"more than {MAX_PATTERNS} distinct key patterns (their "
                f"2^{len(pats)} overlaps would each need a terminal)", o.pointer)
        named = sorted(k for k, _ in o.props)
        values: dict[int, Node] = {}
        for mask in range(1 << len(pats)):  # the node for keys matching exactly these patterns
            matched = {p for i, p in enumerate(pats) if mask >> i & 1}
            nodes = [v for p, v in o.patterns if p in matched]
            nodes += [v for ps, v in o.fallbacks if not matched & set(ps)]
            values[mask] = reduce(self.norm.intersect, nodes, ANY)
        if all(v == NEVER for v in values.values()):
            return None
        base = self._lexeme(json_string_dfa, {"exclude": named}, o.pointer)
        if names_dfa is not None:
            base = self._product(base, names_dfa, "and", "propertyNames", o.pointer)
        pattern_dfas = [self._lexeme(json_string_dfa, {"pattern": p}, o.pointer) for p in pats]
        # one product of the key DFA with every pattern DFA; its accepting states, split by
        # which patterns match and grouped by the resulting value node, give one key terminal
        # per distinct value (instead of 2^n products)
        by_value: dict[Node, list[int]] = {}
        for mask, value in values.items():
            if value != NEVER:
                by_value.setdefault(value, []).append(mask)
        if base.is_empty():
            return None
        if pattern_dfas:
            table, accepting, bits = _pattern_product(base, pattern_dfas)
            edges = reversed_edges(table)
            regions = [(dfa, value) for value, masks in by_value.items()
                       for dfa in (trim(table, accepting & np.isin(bits, masks), 0, edges),)
                       if not dfa.is_empty()]
        else:  # no patterns: one region, the (already trimmed) key DFA itself
            regions = [(base, value) for value in by_value]
        if not regions:
            return None

        def build(nt: int) -> None:
            for dfa, value in regions:
                term = self._term(("keys", _dfa_key(dfa)), "key", lambda d=dfa: d)
                self._rule(nt, (term, *self.colon, self.value(value)))
            self._extras_regions[nt] = regions
        return self._cached(("extras", tuple((_dfa_key(d), v) for d, v in regions)),
                            "extra-entry", build)

    def _extra_offers(self, extras: int | None, needed: int, pointer: str
                      ) -> list[tuple[int, int]]:
        """(value nonterminal, distinct keys, at most `needed`) per additional-key region."""
        if extras is None:
            return []
        offers = self._offers_memo.get((extras, needed))
        if offers is None:
            offers = self._offers_memo[(extras, needed)] = [
                (self.value(value), _distinct_keys(dfa, needed, pointer))
                for dfa, value in self._extras_regions[extras]]
        return offers

    def _in_order(self, named: list, required: set, entries: dict, extras: int | None,
                  lo: int, hi: int | None, pointer: str) -> int:
        """Named properties in schema order, each optional one skippable, then extra entries;
        state (index, entries so far) — at least one entry (the empty object is separate)."""
        cap = max(lo, 1) if hi is None else hi
        if (len(named) + 1) * (min(cap, len(named)) + 1) > MAX_COUNTER_STATES:
            raise UnsupportedSchemaError("maxProperties", "too many (property, count) states",
                                         pointer)
        machine = _Entries()

        def state(i: int, c: int) -> tuple[int, int]:
            return machine.state((i, min(c, cap)))

        start = state(0, 0)
        while machine.pending:
            i, c = key = machine.pending.pop()
            sep = self.comma if c > 0 else ()
            if i < len(named):
                k = named[i][0]
                if k not in required:
                    machine.edge(key, (), state(i + 1, c))
                if hi is None or c + 1 <= hi:
                    machine.edge(key, (*sep, entries[k]), state(i + 1, c + 1))
                continue
            if c >= 1 and c >= lo:
                machine.finals.append(key)
            need = max(lo - c, 1)  # additional entries, each a distinct key (see _object)
            if extras is None or (hi is not None and c + need > hi):
                continue
            if need > 1:
                offers = self._extra_offers(extras, need, pointer)
                if sum(n for _, n in offers) < need:
                    continue
                self._pools.append((pointer, need, offers))
            more = None if hi is None else hi - c - need
            unit = self._cached(("unit-extra", extras), "next-extra",
                                lambda u: self._rule(u, (*self.comma, extras)))
            machine.edge(key, (*sep, extras, *[unit] * (need - 1), self._up_to(unit, more)),
                         _Entries.END)
        return self._left_linear(machine, start)

    def _any_order(self, named: list, required: set, entries: dict, extras: int | None,
                   lo: int, hi: int | None, pointer: str) -> int:
        """Entries in any order: states are (required keys present, entries so far — capped),
        at least one entry. Optional named keys and additional keys are one choice that may
        come back: a repeated key is refused by the key tracker (structgen.constraints.
        json_keys), so entries are distinct keys and their count is the object's size."""
        others = tuple(entries[k] for k, _ in named if k not in required)
        if extras is not None:
            others += (extras,)
        other = None
        if others:
            def build(nt: int) -> None:
                for e in others:
                    self._rule(nt, (e,))
            other = self._cached(("other-entry", others), "other-entry", build)
        # entries are counted exactly up to maxProperties (never more than the named keys when
        # there are no others); without it, up to max(minProperties, 1), then "that many or more"
        limit = None if hi is None else hi if extras is not None else min(hi, len(named))
        cap = max(lo, 1) if limit is None else limit
        machine = _Entries()
        # The required keys present as a bit set over them, sorted: 2^n states with n edges
        # each, where frozensets cost a new set per edge (11 required keys: 0.3 s).
        keys = [entries[k] for k in sorted(required)]
        every = (1 << len(keys)) - 1

        def state(present: int, c: int) -> tuple[int, int]:
            key = (present, c if c < cap else cap)
            if len(machine.seen) >= MAX_SUBSET_STATES and key not in machine.seen:
                raise UnsupportedSchemaError(
                    "properties", f"any-order objects with these properties need more than "
                    f"{MAX_SUBSET_STATES} states (sets of required keys present, entry "
                    "counts); use property_order='schema'", pointer)
            return machine.state(key)

        start = state(0, 0)
        while machine.pending:
            present, c = key = machine.pending.pop()
            sep = self.comma if c > 0 else ()
            if c >= 1 and present == every and c >= lo:
                machine.finals.append(key)
            if limit is not None and c >= limit:
                continue
            for i, entry in enumerate(keys):
                if not present >> i & 1:
                    machine.edge(key, (*sep, entry), state(present | 1 << i, c + 1))
            if other is not None:
                machine.edge(key, (*sep, other), state(present, c + 1))
        return self._left_linear(machine, start)

    def _left_linear(self, machine: "_Entries", start: Hashable) -> int:
        """The entries a state machine reads from `start` to a final state, as a left-linear
        grammar: one nonterminal per state for "the entries so far". Each entry is then
        parsed from the object's start, so an entry's position does not nest one level per
        entry before it, and positions that continue alike are one Earley set (see
        `EarleyParser.intern`): masks cached at the third entry serve the fourth."""
        names: dict[Hashable, int] = {}

        def so_far(q: Hashable) -> int:
            if q not in names:
                names[q] = self._nt("entries" if q is _Entries.END else f"props{len(names)}")
            return names[q]

        reentered = any(dst == start for _, _, dst in machine.edges)
        if reentered:
            self._rule(so_far(start), ())
        for src, syms, dst in machine.edges:
            before = () if src == start and not reentered else (so_far(src),)
            self._rule(so_far(dst), (*before, *syms))
        for q in machine.finals:
            self._rule(so_far(_Entries.END), () if q == start and not reentered else (so_far(q),))
        return so_far(_Entries.END)


@dataclass(frozen=True, eq=False)
class CompiledSchema(CompiledGrammar):
    """A schema's grammar, with the key each object key terminal spells (its DFA accepts that
    key's JSON spellings and nothing else): the key tracker then knows, without a search, that
    a key position holding only present keys' terminals has no fresh key."""

    literal_keys: dict[int, str] = field(default_factory=dict)


@dataclass
class _Entries:
    """A state machine over object entries, built breadth-first from its states' keys:
    edges (state, symbols, state) and final states; `END` is final after its edges."""

    END: ClassVar[object] = object()
    edges: list[tuple[Hashable, tuple, Hashable]] = field(default_factory=list)
    finals: list[Hashable] = field(default_factory=list)
    seen: set = field(default_factory=set)
    pending: list = field(default_factory=list)

    def state(self, key: Hashable) -> Hashable:
        if key not in self.seen:
            self.seen.add(key)
            self.pending.append(key)
        return key

    def edge(self, src: Hashable, syms: tuple, dst: Hashable) -> None:
        if None not in syms:  # as `_rule`: a symbol with no strings drops the edge
            self.edges.append((src, syms, dst))


_EMPTY_DFA = ByteDFA(np.full((1, 256), DEAD, np.int32), np.zeros(1, bool), DEAD)


def _pattern_product(base: ByteDFA, patterns: Sequence[ByteDFA]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Product of `base` with every pattern DFA, run to completion on `base`'s strings:
    (transitions, base accepts, bit i set where pattern i accepts) per product state.

    Explored level by level: one `np.unique` over all successors of a level (a per-state
    search was two thirds of time-to-first-mask on small MaskBench schemas), over one column
    per byte class of all the DFAs (62 of 256 for a Github schema's 7-DFA key product)."""
    dfas = [base, *patterns]
    sinks = np.array([d.n_states for d in dfas])
    tables = [np.vstack([np.where(d.transitions >= 0, d.transitions, d.n_states),
                         np.full((1, 256), d.n_states, np.int64)]) for d in dfas]
    classes, representatives = byte_classes(*tables)
    tables = [t[:, representatives] for t in tables]
    width = len(representatives)
    frontier = np.array([[d.n_states if d.is_empty() else d.initial for d in dfas]], np.int64)
    index = {frontier[0].tobytes(): 0}
    levels = [frontier]
    rows: list[np.ndarray] = []
    while frontier.size:
        nxt = np.stack([t[frontier[:, j]] for j, t in enumerate(tables)], axis=2).reshape(
            -1, len(dfas))  # successors by (state, byte class)
        ids = np.full(len(nxt), DEAD, np.int64)
        alive = nxt[:, 0] != sinks[0]
        fresh: list[int] = []
        if alive.any():
            uniq, inverse = _unique_rows(nxt[alive], sinks + 1)
            uid = np.empty(len(uniq), np.int64)
            for i, row in enumerate(uniq):
                key = row.tobytes()
                if key not in index:
                    index[key] = len(index)
                    fresh.append(i)
                uid[i] = index[key]
            ids[alive] = uid[inverse]
        rows.append(ids.reshape(-1, width))
        frontier = uniq[fresh] if fresh else np.empty((0, len(dfas)), np.int64)
        levels.append(frontier)
    states = np.concatenate(levels)  # in id order: ids are handed out level by level
    extended = [np.append(d.accepting, False) for d in dfas]
    accepting = extended[0][states[:, 0]]
    bits = np.zeros(len(states), np.int64)
    for j in range(len(patterns)):
        bits |= extended[j + 1][states[:, j + 1]].astype(np.int64) << j
    return np.concatenate(rows).astype(np.int32)[:, classes], accepting, bits


def _row_weights(n: int) -> np.ndarray:
    """Odd 64-bit weights of `_unique_rows`'s row hash (fixed: compiles are deterministic)."""
    return np.random.default_rng(2).integers(1, 2**63, size=n, dtype=np.uint64) | np.uint64(1)


def _unique_rows(rows: np.ndarray, radix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(rows, axis=0, return_inverse=True)` (the distinct rows in some fixed order),
    through one integer per row: a 1-D sort instead of a lexicographic one. The integer is the
    row in mixed radix when that fits in 63 bits, else a hash, kept only when no two distinct
    rows share one (the lexicographic sort of a 7-DFA key product's levels was 0.11 s of its
    0.18 s)."""
    if float(np.prod(radix.astype(float))) >= 2.0 ** 62:
        hashed = (rows.astype(np.uint64) * _row_weights(rows.shape[1])).sum(axis=1,
                                                                             dtype=np.uint64)
        _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        if (rows[first][inverse] == rows).all():
            return rows[first], inverse
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        return uniq, inverse.reshape(-1)
    weights = np.concatenate([[1], np.cumprod(radix[:-1])]).astype(np.int64)
    _, first, inverse = np.unique(rows @ weights, return_index=True, return_inverse=True)
    return rows[first], inverse.reshape(-1)


MAX_KEY_SPELLINGS = 100_000  # spellings enumerated to count a finite set of additional keys


def _distinct_keys(dfa: ByteDFA, cap: int, pointer: str) -> int:
    """How many distinct keys (decoded) a key DFA (quoted JSON strings) accepts, up to `cap`."""
    rows, accepting = dfa.rows, dfa.accepting
    colour = [0] * dfa.n_states  # depth-first search for a cycle: 1 on the path, 2 done
    stack = [(dfa.initial, 0)]
    colour[dfa.initial] = 1
    while stack:
        s, b = stack[-1]
        while b < 256 and rows[s][b] < 0:
            b += 1
        if b == 256:
            colour[s] = 2
            stack.pop()
            continue
        stack[-1] = (s, b + 1)
        t = rows[s][b]
        if colour[t] == 1:
            return cap  # a cycle in a trimmed DFA: infinitely many strings, so keys
        if colour[t] == 0:
            colour[t] = 1
            stack.append((t, 0))
    keys: set[str] = set()
    spelled = 0
    todo = [(dfa.initial, b"")]
    while todo and len(keys) < cap:
        s, text = todo.pop()
        if accepting[s]:
            keys.add(json.loads(text))
            spelled += 1
            if spelled > MAX_KEY_SPELLINGS:
                raise UnsupportedSchemaError(
                    "minProperties", f"counting the distinct additional keys needs more than "
                    f"{MAX_KEY_SPELLINGS} spellings enumerated", pointer)
        todo += [(t, text + bytes((b,))) for b, t in enumerate(rows[s]) if t >= 0]
    return min(len(keys), cap)


def _dfa_key(dfa: ByteDFA) -> Hashable:
    return (dfa.initial, dfa.transitions.tobytes(), dfa.accepting.tobytes())


def _brief(part: Any) -> str:
    fields = {k: v for k, v in vars(part).items() if k != "pointer" and v not in (None, (), False)}
    return "(" + ",".join(f"{k}={v}" for k, v in fields.items() if not isinstance(v, frozenset)
                          or len(v) < 4) + ")"


def _describe(node: Node) -> str:
    if node.parts is None:
        return "any"
    if not node.parts:
        return "never"
    return "|".join(type(p).__name__.lower() for p in node.parts)


# --- entry point -----------------------------------------------------------------------------

def whitespace_dfa(whitespace: str) -> ByteDFA | None:
    """The whitespace terminal: None for compact, bounded runs for flexible, else a regex."""
    if whitespace == "compact":
        return None
    if whitespace == "flexible":
        return regex_to_dfa(FLEXIBLE_WHITESPACE)
    try:
        dfa = regex_to_dfa(whitespace)
    except RegexError as e:
        raise ValueError(f"whitespace pattern: {e}") from None
    if dfa.accepting[dfa.initial]:
        raise ValueError(f"whitespace pattern {whitespace!r} matches the empty string; "
                         "whitespace is already optional at each place, so it must not")
    if any(b not in b" \t\n\r" for b in _first_bytes(dfa)):
        raise ValueError(f"whitespace pattern {whitespace!r} matches non-whitespace bytes "
                         "(JSON allows only space, tab, newline and carriage return)")
    return dfa


def _first_bytes(dfa: ByteDFA) -> set[int]:
    """Every byte on any transition (the DFA is trimmed, so each is used by some match)."""
    return set(np.flatnonzero((dfa.transitions >= 0).any(axis=0)).tolist())


def compile_schema(schema: Any, *, whitespace: str = "compact", property_order: str = "schema",
                   spelling: str = "canonical", lenient: bool = False,
                   format_assertion: bool = True,
                   registry: Any = None) -> tuple[CompiledGrammar, list[str]]:
    """A JSON value (dict/bool schema) → (grammar, warnings). See `JsonSchema` for semantics."""
    if property_order not in ("schema", "any"):
        raise ValueError(f"property_order must be 'schema' or 'any', not {property_order!r}")
    if spelling not in ("canonical", "any"):
        raise ValueError(f"spelling must be 'canonical' or 'any', not {spelling!r}")
    ws = whitespace_dfa(whitespace)
    check_schema(schema)
    warnings: list[str] = []
    resolver = Resolver(schema, registry)
    norm = Normaliser(resolver, lenient=lenient, format_assertion=format_assertion,
                      warnings=warnings, canonical=spelling == "canonical")
    root = norm.ref(resolver.root)
    grammar = Emitter(norm, whitespace=ws, property_order=property_order,
                      canonical=spelling == "canonical").run(root)
    return grammar, warnings
