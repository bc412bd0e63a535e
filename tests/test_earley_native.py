"""The compiled Earley recognizer (`earley_core.c`) against the Python one (`earley.py`): the same
sets — expected terminals, acceptance and unfinished items, origins matched by position — along
random terminal sequences of the shipped and hand-written grammars and of random grammars
(nullable rules, left and right recursion, unit cycles), unions of sets at one position
included; and grammar automata masking alike with either, across a reset that replaces the
compiled parser."""
from __future__ import annotations

import gc
import random
import weakref

import numpy as np
import pytest

from structgen.automata.earley import CFG, EarleyParser, derived
from structgen.automata.earley_native import NativeEarleyParser, new_parser
from structgen.automata.grammar import compile_lark
from structgen.vocab import native
from test_grammar import HAND, NAMES, grammar_text

pytestmark = pytest.mark.skipif(not native.available(),
                                reason=f"compiled kernels unavailable: {native.reason}")


def _items(state, to_native: dict | None = None) -> frozenset:
    """Unfinished items, origins mapped to the compiled parser's sets (Python's) or as they
    are (the compiled parser's)."""
    rules = state.parser.rules
    return frozenset((r, d, o if to_native is None else to_native[o]) for r, d, o in state.items
                     if d < len(rules[r][1]))


def _same(a, b, to_native: dict) -> None:
    assert a.expected == b.expected
    assert a.accepting == b.accepting
    assert to_native.setdefault(a, b) is b  # Python's interned sets are one compiled set too
    assert _items(a, to_native) == _items(b)


def _compare(cfg: CFG, seed: int, walks: int = 30, steps: int = 30) -> int:
    """Walk both parsers along the same random terminals; the number of sets compared."""
    py, nat = EarleyParser(cfg), NativeEarleyParser(cfg)
    rng = random.Random(seed)
    to_native: dict = {}
    compared = 0
    for _ in range(walks):
        a, b = py.initial, nat.initial
        for _ in range(steps):
            _same(a, b, to_native)
            compared += 1
            if not a.expected:
                break
            t = rng.choice(sorted(a.expected))
            assert b.scan(t) is b.scan(t)  # memoized: one handle per set
            if rng.random() < 0.2:  # a set with a successor (text an ignored lexeme skipped)
                _same(py.union([a, a.scan(t)]), nat.union([b, b.scan(t)]), to_native)
            if rng.random() < 0.3 and len(a.expected) > 1:  # a union of two successors
                t2 = rng.choice(sorted(a.expected - {t}))
                ua = py.union([a.scan(t), a.scan(t2)])
                ub = nat.union([b.scan(t), b.scan(t2)])
                _same(ua, ub, to_native)
                assert nat.union([b.scan(t2), b.scan(t)]) is ub
                a, b = ua, ub
            else:
                a, b = a.scan(t), b.scan(t)
        missing = next((t for t in range(cfg.n_terminals) if t not in a.expected), None)
        if missing is not None:
            assert b.scan(missing) is None
    return compared


@pytest.mark.parametrize("name", NAMES + sorted(HAND))
def test_compiled_sets_equal_python_sets(name: str) -> None:
    text = grammar_text(name) if name in NAMES else HAND[name][0]
    assert _compare(compile_lark(text).cfg, seed=3) > 30


def _random_cfg(seed: int) -> CFG:
    """Rules over 3 terminals and 6 nonterminals: empty, unit and long right sides, so that
    nullable symbols, left and right recursion and unit cycles all occur; every nonterminal
    productive (each also derives a terminal)."""
    rnd = random.Random(seed)
    n_t, n_nt = 3, 6
    rules = {(n_t + a, (rnd.randrange(n_t),)) for a in range(n_nt)}
    for _ in range(rnd.randrange(4, 16)):
        size = rnd.choice([0, 1, 1, 2, 2, 3, 4])
        rules.add((n_t + rnd.randrange(n_nt), tuple(rnd.randrange(n_t + n_nt) for _ in range(size))))
    assert derived(sorted(rules), lambda s: s < n_t) >= set(range(n_t, n_t + n_nt))
    return CFG(n_t, tuple(sorted(rules)), n_t, tuple(f"T{i}" for i in range(n_t)),
               tuple(f"N{i}" for i in range(n_nt)))


@pytest.mark.parametrize("seed", range(60))
def test_compiled_sets_equal_python_sets_on_random_grammars(seed: int) -> None:
    _compare(_random_cfg(seed), seed, walks=10, steps=12)


def test_new_parser_compiled_or_python() -> None:
    cfg = compile_lark(grammar_text("arithmetic")).cfg
    assert isinstance(new_parser(cfg), NativeEarleyParser)
    assert isinstance(new_parser(cfg, compiled=False), EarleyParser)


@pytest.mark.parametrize("name", ["c_like", "sqlite_select"])
def test_masks_alike_with_either_parser_across_resets(name: str, smollm2_vocab,
                                                      monkeypatch) -> None:
    """A grammar automaton whose caches reset every few hundred states replaces its compiled
    parser at each reset; its masks along a sentence (states from the old parser carried
    across) equal an automaton's on the Python parser."""
    from structgen import Grammar
    from structgen.constraints.grammar import GrammarAutomaton
    from test_grammar import SENTENCES

    compiled = Grammar(grammar_text(name)).compiled
    text = SENTENCES[name][0].encode() if name in SENTENCES else None
    assert text
    monkeypatch.setattr(GrammarAutomaton, "compiled_parser", False)
    reference = GrammarAutomaton(compiled, smollm2_vocab)
    monkeypatch.setattr(GrammarAutomaton, "compiled_parser", True)
    automaton = GrammarAutomaton(compiled, smollm2_vocab)
    automaton.max_states = 300
    parsers = {id(automaton.parser): weakref.ref(automaton.parser)}
    s, r = automaton.start, reference.start
    for i in range(len(text)):
        assert np.array_equal(automaton.mask(s), reference.mask(r)), (name, text[:i])
        assert automaton.is_accepting(s) == reference.is_accepting(r)
        s = automaton._advance_bytes(s, text[i:i + 1])
        r = reference._advance_bytes(r, text[i:i + 1])
        parsers.setdefault(id(automaton.parser), weakref.ref(automaton.parser))
    assert automaton.is_accepting(s) and reference.is_accepting(r)
    assert automaton.completion_bytes(automaton.start) == reference.completion_bytes(
        reference.start)
    assert len(parsers) > 1  # resets happened, each with a new compiled parser
    gc.collect()
    gc.disable()
    try:  # dropping the automaton releases every parser it used: freed by refcounting
        del automaton, s
        assert all(ref() is None for ref in parsers.values())
    finally:
        gc.enable()
