"""Byte DFA products and minimisation against plain references (exact language equality)."""
from __future__ import annotations

import itertools
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen.automata.bytedfa import DEAD, ByteDFA, byte_classes, dfa_product, minimize, trim
from structgen.automata.regex import regex_to_dfa
from structgen.schema import lexemes

PATTERNS = [r"[ab]*", r"a+b?", r"(ab|ba)*", r"[0-9]{2,5}", r"\d+(\.\d+)?", r"x|y|z", r"(a|b)*abb",
            r"[a-z]{0,3}c", r"", r"[^a]*", r"é+|ü", r"(aa)*", r"(aaa)*", r"a{3,}"]


def equivalent(x: ByteDFA, y: ByteDFA) -> bool:
    """Whether two byte DFAs accept the same strings: a walk over reachable state pairs (missing
    transitions and the empty DFA read as a dead sink), independent of the code under test."""
    def step(d: ByteDFA, s: int, b: int) -> int:
        return DEAD if s == DEAD else d.rows[s][b]

    def acc(d: ByteDFA, s: int) -> bool:
        return s != DEAD and bool(d.accepting[s])

    start = (x.initial, y.initial)
    seen, todo = {start}, [start]
    while todo:
        p, q = todo.pop()
        if acc(x, p) != acc(y, q):
            return False
        for b in range(256):
            nxt = (step(x, p, b), step(y, q, b))
            if nxt != (DEAD, DEAD) and nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return True


def reference_product(a: ByteDFA, b: ByteDFA, op: str) -> ByteDFA:
    """The product by a plain breadth-first search over pairs, one byte at a time."""
    keep = {"and": lambda p, q: p and q, "andnot": lambda p, q: p and not q,
            "or": lambda p, q: p or q}[op]
    index = {(a.initial, b.initial): 0}
    order = [(a.initial, b.initial)]
    rows = []
    k = 0
    while k < len(order):
        p, q = order[k]
        k += 1
        row = [DEAD] * 256
        for byte in range(256):
            nxt = (DEAD if p == DEAD else a.rows[p][byte], DEAD if q == DEAD else b.rows[q][byte])
            alive = {"and": nxt[0] != DEAD and nxt[1] != DEAD, "andnot": nxt[0] != DEAD,
                     "or": nxt != (DEAD, DEAD)}[op]
            if alive:
                if nxt not in index:
                    index[nxt] = len(order)
                    order.append(nxt)
                row[byte] = index[nxt]
        rows.append(row)
    accepting = [keep(p != DEAD and bool(a.accepting[p]), q != DEAD and bool(b.accepting[q]))
                 for p, q in order]
    return trim(np.array(rows, np.int32), np.array(accepting, bool), 0)


DFAS = [regex_to_dfa(p) for p in PATTERNS]


@pytest.mark.parametrize("op", ["and", "andnot", "or"])
def test_product_matches_reference(op: str) -> None:
    for x, y in itertools.product(DFAS, repeat=2):
        got = dfa_product(x, y, op)
        want = reference_product(x, y, op) if not (x.is_empty() or y.is_empty()) else got
        assert equivalent(got, want)
        assert got.n_states <= max(want.n_states, 1)


def test_product_is_minimal() -> None:
    # (a|b)*abb ∧ [ab]*: the classic 4-state minimal DFA
    got = dfa_product(regex_to_dfa(r"(a|b)*abb"), regex_to_dfa(r"[ab]*"), "and")
    assert got.n_states == 4
    assert equivalent(got, regex_to_dfa(r"(a|b)*abb"))


def test_product_state_bound() -> None:
    a, b = regex_to_dfa(r"[0-9a-f]{8}"), regex_to_dfa(r"[0-9]*")
    with pytest.raises(OverflowError):
        dfa_product(a, b, "andnot", max_states=4)


def test_minimize_merges_equivalent_states() -> None:
    # two copies of a*b reached by different first bytes ("x" / "y"): merged into one
    t = np.full((5, 256), DEAD, np.int32)
    t[0, ord("x")], t[0, ord("y")] = 1, 2
    t[1, ord("a")], t[1, ord("b")] = 1, 3
    t[2, ord("a")], t[2, ord("b")] = 2, 4
    acc = np.array([False, False, False, True, True])
    got = minimize(t, acc, 0)
    assert got.n_states == 3
    assert equivalent(got, trim(t, acc, 0))


def test_byte_classes() -> None:
    d = regex_to_dfa(r"[0-9]+|x")
    cls, reps = byte_classes(d.transitions)
    assert (d.transitions[:, reps][:, cls] == d.transitions).all()
    assert len(set(cls[ord(c)] for c in "0123456789")) == 1
    assert len(reps) == 3  # digits, "x", everything else


def test_rows_are_the_table_converted_on_first_read() -> None:
    d = regex_to_dfa(r"[a-f]{2,9}x")
    assert len(d.rows) == 0  # nothing converted before a read
    s = d.rows[d.initial]
    assert s == tuple(d.transitions[d.initial].tolist()) and len(d.rows) == 1
    assert d.rows[d.initial] is s  # converted once
    assert [d.rows[k] for k in range(d.n_states)] == [tuple(r) for r in d.transitions.tolist()]
    for bad in (DEAD, d.n_states):  # no wrap-around to the last row
        with pytest.raises(IndexError):
            d.rows[bad]


def test_walk_from_dead_is_dead() -> None:
    """An empty DFA's initial state is DEAD: walks from it stay DEAD and accept nothing (they
    once read row -1, which wrapped around to the last row)."""
    empty = ByteDFA(np.zeros((1, 256), np.int32), np.array([True]), DEAD)  # row 0: all to 0
    assert empty.is_empty()
    assert empty.walk(DEAD, b"a") == DEAD and empty.walk(DEAD, b"") == DEAD
    assert not empty.accepts(b"") and not empty.accepts(b"a")


@pytest.mark.parametrize("spec", [
    (True, (Decimal(1), False), None, None),
    (False, (Decimal(0), False), (Decimal(99), False), None),
    (False, (Decimal("2.5"), False), (Decimal("2.5"), False), None),
    (False, None, (Decimal(-100), True), Fraction(12)),
    (False, None, None, Fraction(3, 10)),
])
def test_number_tables_minimised(spec: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    """The minimised number DFA reads the same numbers as the unminimised construction."""
    got = lexemes._number_table(lexemes._NumberSpec(*spec))
    monkeypatch.setattr(lexemes, "minimize", trim)
    full = lexemes._number_table(lexemes._NumberSpec(*spec))
    assert got.n_states < full.n_states
    assert equivalent(got, full)


def test_schema_product_over_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A product past its state bound is a refusal naming the keyword (lenient: dropped with a
    warning), not minutes of work."""
    from structgen.constraints.json_schema import JsonSchema
    from structgen.errors import UnsupportedSchemaError
    from structgen.schema import compile as schema_compile

    def small(a: ByteDFA, b: ByteDFA, op: str) -> ByteDFA:
        return dfa_product(a, b, op, max_states=3)

    monkeypatch.setattr(schema_compile, "dfa_product", small)
    schema = {"type": "string", "allOf": [{"pattern": "^[a-z]{4,8}$"}, {"pattern": "^a"}]}
    with pytest.raises(UnsupportedSchemaError) as e:
        JsonSchema(schema)
    assert e.value.keyword == "pattern"
    lenient = JsonSchema(schema, lenient=True)
    assert any("pattern" in w and "dropped" in w for w in lenient.warnings)


@pytest.mark.parametrize("integer,lo,hi,modulus", [
    (False, None, (Decimal(-1000), True), Fraction(12)),
    (True, (Decimal(0), False), (Decimal(100), False), Fraction(7)),
    (False, (Decimal("-2.5"), True), (Decimal("2.5"), False), Fraction(1, 4)),
    (False, (Decimal(1), False), None, Fraction(3, 10)),
    (False, (Decimal(5), False), (Decimal(5), False), Fraction(5)),
    (False, (Decimal(0), True), (Decimal("0.05"), False), Fraction(1, 100)),
])
def test_number_bounds_and_residues_apart(integer: bool, lo: tuple | None, hi: tuple | None,
                                          modulus: Fraction) -> None:
    """Bounds with multipleOf as a product of the two tables reads the same numbers as one
    table checking both."""
    got = lexemes._json_number_dfa(integer, lo, hi, modulus)
    want = lexemes._number_table(lexemes._NumberSpec(integer, lo, hi, modulus))
    assert equivalent(got, want)


@pytest.mark.parametrize("kwargs", [{"format": "date"}, {"format": "email"},
                                    {"pattern": "^[a-z]{2,4}-\\d+$"}, {"pattern": "ab|cd"}])
def test_string_dfas_minimised(kwargs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pattern and format string DFAs, minimised, read the same strings as built."""
    args = dict(pattern=None, min_length=0, max_length=None, format=None, literals=None,
                exclude=(), compact=False, canonical=False)
    args.update(kwargs)
    got = lexemes._string_dfa(**args)
    monkeypatch.setattr(lexemes, "minimize", trim)
    full = lexemes._string_dfa(**args)
    assert got.n_states < full.n_states
    assert equivalent(got, full)


def test_shortest_search_small_and_large_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python search (few edges) and the numpy one give the same distances and bytes."""
    from structgen.automata import bytedfa

    rng = np.random.default_rng(7)
    cases = [(d.transitions, d.accepting) for d in DFAS]
    for _ in range(30):
        n = int(rng.integers(1, 60))
        t = np.where(rng.random((n, 256)) < 0.03, rng.integers(0, n, (n, 256)), DEAD).astype(np.int32)
        cases.append((t, rng.random(n) < 0.2))
    small = [bytedfa.shortest_to_accept(t, a) for t, a in cases]
    monkeypatch.setattr(bytedfa, "SMALL_SEARCH_EDGES", -1)
    for (t, a), (dist, step) in zip(cases, small):
        want_dist, want_step = bytedfa.shortest_to_accept(t, a)
        assert (dist == want_dist).all() and (step == want_step).all()


@pytest.mark.parametrize("compiled", [True, False])
@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 12), density=st.floats(0.0, 0.3))
def test_endless_states_on_random_graphs(compiled: bool, seed: int, n: int,
                                         density: float) -> None:
    """`EndlessStates` (each state decided on demand, in any order, sharing verdicts; searched
    in C or in Python) against reachability of a cycle computed independently: a state is
    endless iff a path from it reaches a state twice, i.e. some state on a cycle is
    reachable."""
    from structgen.automata.bytedfa import EndlessStates
    from structgen.vocab import native

    if compiled and not native.available():
        pytest.skip(f"no compiled kernels here: {native.reason}")

    rng = np.random.default_rng(seed)
    transitions = np.where(rng.random((n, 256)) < density / 16,
                           rng.integers(0, n, (n, 256)), -1).astype(np.int32)
    succ = [set(row[row >= 0].tolist()) for row in transitions]
    reach = [set(s) for s in succ]  # transitive closure (n is small)
    for _ in range(n):
        reach = [r.union(*(reach[q] for q in r)) for r in reach]
    on_cycle = {s for s in range(n) if s in reach[s]}
    expected = {s for s in range(n) if s in on_cycle or reach[s] & on_cycle}
    endless = EndlessStates(ByteDFA(transitions, np.ones(n, bool), 0))
    if not compiled:
        endless._compiled = None  # the Python search
    order = rng.permutation(n).tolist()
    assert {s for s in order if s in endless} == expected
    assert bool(endless) == (0 in expected)
    assert isinstance(endless._compiled, native.EndlessSearch) == compiled


@pytest.mark.parametrize("pattern", [r"[ \t]{1,4}", r"a(b|c)*d?", r"(ab|a)c{0,3}", r"\n {2,3}"])
def test_includes_matches_languages(pattern: str) -> None:
    """`includes(big, small)`: every string accepted from `small` is accepted from `big`,
    over all short strings of the DFA's bytes, both ways (the search is exact this small)."""
    dfa = regex_to_dfa(pattern)
    alphabet = sorted({b for s in range(dfa.n_states) for b in range(256)
                       if dfa.transitions[s, b] != DEAD})
    texts = [bytes(x) for n in range(7) for x in itertools.product(alphabet, repeat=n)]
    accepted = [{t for t in texts if dfa.walk(s, t) != DEAD and dfa.accepting[dfa.walk(s, t)]}
                for s in range(dfa.n_states)]
    for big in range(dfa.n_states):
        for small in range(dfa.n_states):
            assert dfa.includes(big, small) == (accepted[small] <= accepted[big]), (big, small)
