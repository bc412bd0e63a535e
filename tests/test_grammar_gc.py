"""The grammar engine and Python's cyclic GC: fresh masks create many long-lived cache objects
(grammar states, Earley sets, pieces), and every object the collector tracks makes full
collections more frequent and longer (they were the largest fresh-mask tail: 0.2-1 s). These
tests pin down that per-state structures hold ints where they can, so that the collector
untracks them, and that the weak successor memo still gives one object per history."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest

from structgen import Grammar
from structgen.automata.earley import EarleyParser, ParserState, _Piece
from structgen.constraints.grammar import GrammarAutomaton

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
C_TEXT = "int f(int x) { if (x > 0) { return x * 2 + y; } while (i < 10) i = i + 1; }"


def _fresh_masks(vocab, text: str) -> GrammarAutomaton:
    compiled = Grammar((GRAMMARS / "c_like.lark").read_text()).compiled
    automaton = GrammarAutomaton(compiled, vocab)
    state = automaton.start
    for b in text.encode():
        automaton.mask(state)
        state = automaton._advance_bytes(state, bytes([b]))
        assert state is not None
    return automaton


def _settle() -> None:
    """Full collections untrack tuples and dicts that hold only untracked values. Objects a
    walk allocated reach the oldest generation without a young collection (`_gc_paused`), so
    a container of tuples is untracked one collection after its tuples: collect twice."""
    gc.collect()
    gc.collect()


def _new_tracked(before: set[int]) -> list[object]:
    _settle()
    return [o for o in gc.get_objects() if id(o) not in before]


def test_pieces_hold_untracked_ints(smollm2_vocab, monkeypatch) -> None:
    monkeypatch.setattr(GrammarAutomaton, "compiled_parser", False)
    automaton = _fresh_masks(smollm2_vocab, C_TEXT[:30])
    _settle()
    pieces = [o for o in gc.get_objects() if type(o) is _Piece]
    assert pieces
    for piece in pieces[:2000]:
        assert not gc.is_tracked(piece.items)
        assert not gc.is_tracked(piece.waiting) and not gc.is_tracked(piece.by_terminal)
        assert isinstance(piece.origin, ParserState)
    assert isinstance(automaton.parser, EarleyParser)


def test_tracked_objects_per_state(smollm2_vocab) -> None:
    """Fresh masks on the C-like grammar keep few GC-tracked objects per grammar state: ~9
    (was ~38 before pieces held (rule, dot) ints, sets shared one successor memo per parser,
    symbol sets were interned and per-state caches were keyed by Earley-set serials)."""
    compiled = Grammar((GRAMMARS / "c_like.lark").read_text()).compiled
    warm = GrammarAutomaton(compiled, smollm2_vocab)  # per-grammar caches (splits, views)
    warm.mask(warm.start)
    del warm
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    automaton = _fresh_masks(smollm2_vocab, C_TEXT)
    new = _new_tracked(before)
    per_state = len(new) / len(automaton._lexemes)
    assert per_state < 15, per_state


def test_successor_memo_is_weak_and_shared(smollm2_vocab) -> None:
    compiled = Grammar((GRAMMARS / "arithmetic.lark").read_text()).compiled
    parser = EarleyParser(compiled.cfg)
    t = min(parser.initial.expected)
    a = parser.initial.scan(t)
    assert a is parser.initial.scan(t)  # one object per history while it is held
    key = (parser.initial.serial, t)
    assert parser._scans[key] is a
    del a
    gc.collect()
    assert key not in parser._scans  # a set nothing holds is freed, its memo entry too


def _own(state: ParserState) -> frozenset:
    """The set's items, its own origin written as None (two equal sets are distinct objects)."""
    return frozenset((r, d, None if o is state else o) for r, d, o in state.items)


@pytest.mark.parametrize("name", ["c_like", "python_expr"])
def test_pieces_equal_items(name: str) -> None:
    """A set's items, rebuilt from (rule, dot) pieces and their origins, equal the plain
    item walk's."""
    compiled = Grammar((GRAMMARS / f"{name}.lark").read_text()).compiled
    parser = EarleyParser(compiled.cfg)
    state = parser.initial
    for _ in range(12):
        t = min(state.expected)
        nxt = state.scan(t)
        kernel = [(r, d + 1, o) for r, d, o in state.items
                  if d < len(parser.rules[r][1]) and parser.rules[r][1][d] == t]
        plain = ParserState(parser, kernel)
        assert _own(nxt) == _own(plain) and nxt.expected == plain.expected
        assert nxt.accepting == plain.accepting
        state = nxt


def test_dropped_automaton_freed_by_refcounting(smollm2_vocab) -> None:
    """Dropping an automaton releases its Earley sets' caches (the reference cycles between
    sets and their pieces), so they are freed at once: little is left for the cyclic GC
    (~32,000 objects per C-like document before)."""
    automaton = _fresh_masks(smollm2_vocab, C_TEXT)
    gc.collect()
    gc.disable()
    try:
        del automaton
        left = gc.collect()
    finally:
        gc.enable()
    assert left < 3000, left


def test_released_sets_stay_valid(smollm2_vocab) -> None:
    """States held across a release (and an automaton reset) give the same masks."""
    compiled = Grammar((GRAMMARS / "c_like.lark").read_text()).compiled
    automaton = GrammarAutomaton(compiled, smollm2_vocab)
    states, state = [], automaton.start
    for b in C_TEXT[:40].encode():
        states.append(state)
        state = automaton._advance_bytes(state, bytes([b]))
    before = [automaton.mask(s).clone() for s in states]
    automaton._reset()
    automaton.clear_caches()
    automaton.parser.release()
    for s, m in zip(states, before):
        assert (automaton.mask(s) == m).all()
    assert automaton._advance_bytes(states[-1], C_TEXT[39:41].encode()) is not None


def _young_collections_during(fn) -> int:
    """How many collections of the young generations run while `fn()` does."""
    seen = []

    def callback(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] < 2:
            seen.append(info["generation"])

    gc.callbacks.append(callback)
    try:
        fn()
    finally:
        gc.callbacks.remove(callback)
    return len(seen)


def test_fresh_mask_objects_skip_young_collections(smollm2_vocab) -> None:
    """A fresh mask's walk allocates thousands of long-lived objects with the collector off;
    they go straight to the oldest generation instead of being traversed by the young
    collection that re-enabling would set off (~4 ms per fresh C-like mask on Gemma-3)."""
    compiled = Grammar((GRAMMARS / "c_like.lark").read_text()).compiled
    automaton = GrammarAutomaton(compiled, smollm2_vocab)
    state = automaton._advance_bytes(automaton.start, C_TEXT[:20].encode())
    gc.collect()
    before = gc.get_count()
    assert _young_collections_during(lambda: automaton.mask(state)) == 0
    assert gc.get_count()[0] < 700 and gc.get_count()[1] == before[1]
    assert len(automaton._lexemes) > 200  # (the walk did allocate: many new grammar states)


def test_application_frozen_objects_stay_frozen(smollm2_vocab) -> None:
    """An application that froze its objects (`gc.freeze()` after loading a model) keeps them
    frozen: the promotion is skipped then, and masks are unchanged."""
    compiled = Grammar((GRAMMARS / "c_like.lark").read_text()).compiled
    automaton = GrammarAutomaton(compiled, smollm2_vocab)
    state = automaton._advance_bytes(automaton.start, C_TEXT[:20].encode())
    expected = GrammarAutomaton(compiled, smollm2_vocab).mask(state).clone()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert (automaton.mask(state) == expected).all()
        assert gc.get_freeze_count() == frozen and gc.isenabled()
    finally:
        gc.unfreeze()
