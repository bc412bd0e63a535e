"""The compiled trie walk (`structgen.vocab.native`) against the numpy walk it stands in for,
the preorder layout against its definition, and the fallback when it cannot be built."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen.automata.bytedfa import ByteDFA
from structgen.automata.regex import regex_to_dfa
from structgen.constraints.grammar import _FirstByteWalk, _root_view
from structgen.vocab import native
from structgen.vocab.trie import TokenTrie, trie_for


@pytest.fixture(scope="module")
def compiled() -> None:
    if not native.available():
        pytest.skip(f"no compiled walk here: {native.reason}")


def _numpy_walk(trie: TokenTrie, source, state: int, first=None, monkeypatch=None):
    monkeypatch.setattr(native, "available", lambda: False)
    try:
        return trie.walk(source, state, first)
    finally:
        monkeypatch.undo()


def _pairs(ids: np.ndarray, states: np.ndarray) -> list[tuple[int, int]]:
    return sorted(zip(np.asarray(ids).tolist(), np.asarray(states).tolist()))


class _Table:
    """A walk source with a full table (and maybe an absorbing state)."""

    def __init__(self, table: np.ndarray, sink: int, absorbing: int) -> None:
        self.table, self.sink, self.absorbing = table.astype(np.int32).ravel(), sink, absorbing

    def step(self, states: np.ndarray, data: np.ndarray) -> np.ndarray:
        return self.table[states * 256 + data]


@st.composite
def _words(draw):
    """(a few bytes, a small vocabulary over them: duplicate spellings included)."""
    alphabet = draw(st.lists(st.integers(0, 255), min_size=1, max_size=4, unique=True))
    words = draw(st.lists(st.lists(st.sampled_from(alphabet), min_size=1, max_size=6),
                          min_size=1, max_size=40))
    return alphabet, [bytes(w) for w in words]


@st.composite
def _cases(draw):
    """A small vocabulary over a few bytes (duplicate spellings included) and a random table
    over them: sink n, and state n + 1 absorbing when drawn so."""
    alphabet, words = draw(_words())
    n = draw(st.integers(1, 5))
    absorbing = draw(st.booleans())
    total = n + 2
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    table = rng.integers(0, total if absorbing else n + 1, size=(total, 256))
    table[n] = n  # the sink keeps itself
    table[n + 1] = n + 1  # (unreachable unless absorbing)
    first = rng.random(256) < 0.7 if draw(st.booleans()) else None
    return (words, _Table(table, n, n + 1 if absorbing else -1),
            draw(st.integers(0, n - 1)), first, alphabet[0])


@settings(max_examples=150, deadline=None)
@given(case=_cases())
def test_compiled_walk_equals_numpy_walk(compiled, case, monkeypatch_module) -> None:
    words, source, start, first, byte = case
    trie = TokenTrie(words)
    for t in (trie, trie.below(byte), trie.relabelled(lambda ids: 1000 + 7 * ids)):
        want = _numpy_walk(t, source, start, first, monkeypatch_module)
        assert _pairs(*t.walk(source, start, first)) == _pairs(*want)


@st.composite
def _first_byte_cases(draw):
    """A small vocabulary and a random DFA over a few bytes (dead transitions included), with
    random start bytes and a start state."""
    alphabet, words = draw(_words())
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    transitions = rng.integers(-1, n, size=(n, 256)).astype(np.int32)
    accepting = rng.random(n) < 0.5
    starts = rng.random(256) < 0.5
    dfa = ByteDFA(transitions, accepting, 0)
    return words, dfa, starts, draw(st.integers(0, n - 1))


@settings(max_examples=150, deadline=None)
@given(case=_first_byte_cases())
def test_compiled_first_byte_split_equals_numpy_walk(compiled, case, monkeypatch_module) -> None:
    """A lexeme's first-byte split by the compiled walk (next states computed from the DFA as it
    goes) equals the numpy walk through its table: tokens ending in a live DFA state inside,
    the others (absorbed) leaving."""
    words, dfa, starts, start = case
    trie = TokenTrie(words)
    quick = _FirstByteWalk(dfa, starts)
    inside, leaving = quick.split(trie, start)
    ids, ends = _numpy_walk(trie, quick, 3 * start, None, monkeypatch_module)
    live = ends < 3 * dfa.n_states
    assert not (ends == quick.sink).any()
    assert (sorted(inside.tolist()), sorted(leaving.tolist())) == (
        sorted(ids[live].tolist()), sorted(ids[~live].tolist()))


@settings(max_examples=150, deadline=None)
@given(cases=st.lists(_first_byte_cases(), min_size=1, max_size=6), words=_words())
def test_first_byte_splits_of_many_lexemes_equal_one_by_one(compiled, cases, words) -> None:
    """`first_byte_splits` (many lexemes in one walk, each with its own DFA and start bytes)
    gives every lexeme the split its own walk gives, or None when the buffer would not hold
    them (then nothing is wrong, only slower)."""
    trie = TokenTrie(words[1] + [w for case in cases for w in case[0]])
    pre = trie.preorder()
    quicks = [_FirstByteWalk(dfa, starts) for _, dfa, starts, _ in cases]
    got = pre.first_byte_splits([q.addresses for q in quicks], [3 * c[3] for c in cases])
    if got is None:
        assert sum(len(q.split(trie, c[3])[0]) + len(q.split(trie, c[3])[1])
                   for q, c in zip(quicks, cases)) > len(pre.tokens) // 2
        return
    for quick, case, (inside, leaving) in zip(quicks, cases, got):
        want = quick.split(trie, case[3])
        assert (sorted(inside.tolist()), sorted(leaving.tolist())) == (
            sorted(want[0].tolist()), sorted(want[1].tolist()))


@pytest.mark.model
def test_key_literal_splits_in_one_walk_on_smollm2(compiled, smollm2_vocab) -> None:
    """A key position's key literals (and whitespace) walked together over SmolLM2's
    vocabulary split as each walks alone."""
    from structgen.schema.lexemes import json_string_dfa

    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ',:}] \n"']] = True
    trie = _root_view(smollm2_vocab).local_trie
    dfas = [json_string_dfa(literals=[k]) for k in ("name", "na", "id", "a b", 'x"y', "é")]
    dfas.append(regex_to_dfa(r"[ \t\n\r]{1,32}"))
    jobs = [(_FirstByteWalk(dfa, starts), s) for dfa in dfas for s in range(min(dfa.n_states, 5))]
    got = trie.preorder().first_byte_splits([q.addresses for q, _ in jobs],
                                            [3 * s for _, s in jobs])
    assert got is not None
    for (quick, state), (inside, leaving) in zip(jobs, got):
        want = quick.split(trie, state)
        assert (sorted(inside.tolist()), sorted(leaving.tolist())) == (
            sorted(want[0].tolist()), sorted(want[1].tolist()))


def _classes(trie: TokenTrie, quick: _FirstByteWalk, state: int) -> dict[int, int]:
    """Token -> class of its first-byte walk from DFA state `state` (0 inside, 2 may leave;
    dead tokens left out), by the compiled split."""
    inside, leaving = quick.split(trie, state)
    return {**dict.fromkeys(inside.tolist(), 0), **dict.fromkeys(leaving.tolist(), 2)}


@st.composite
def _small_first_byte_cases(draw):
    """As `_first_byte_cases`, over 1-3 states with no bias to loops: two walks from different
    states then often meet in one DFA state, one of them past a place where the lexeme could
    have ended and the other not (alike only in the same phase)."""
    _, words = draw(_words())
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dfa = ByteDFA(rng.integers(-1, n, size=(n, 256)).astype(np.int32), rng.random(n) < 0.5, 0)
    return words, dfa, rng.random(256) < 0.5, draw(st.integers(0, n - 1))


@settings(max_examples=300, deadline=None)
@given(a=st.one_of(_first_byte_cases(), _small_first_byte_cases()), b=st.integers(0, 2**31),
       same=st.booleans())
def test_first_byte_diff_finds_every_token_classed_otherwise(compiled, a, b, same) -> None:
    """Two first-byte walks side by side (of one DFA from two states, or of two DFAs, proving
    alike states by DFA equivalence) report exactly the tokens whose class differs, with
    their class under the first walk."""
    from structgen.constraints.grammar import _Bisimilar

    words, dfa, starts, x = a
    rng = np.random.default_rng(b)
    n = dfa.n_states
    if same:
        other = dfa
    else:  # a copy changed in one state (a row or its acceptance): most states still alike
        table, accepting = dfa.transitions.copy(), dfa.accepting.copy()
        r = int(rng.integers(n))
        if rng.random() < 0.5:
            accepting[r] = not accepting[r]
        else:
            table[r, rng.random(256) < 0.3] = rng.integers(-1, n)
        other = ByteDFA(table, accepting, 0)
    y = int(rng.integers(n))
    trie = TokenTrie(words)
    qa, qb = _FirstByteWalk(dfa, starts), _FirstByteWalk(other, starts)
    search = None if same else _Bisimilar(qa, qb).search()
    rows = trie.preorder().first_byte_diff(qa.addresses, qb.addresses,
                                           None if same else search.addresses, 3 * x, 3 * y,
                                           10**6)
    got: dict[int, int] = {}
    for first, end, cls in rows.tolist():
        for t in trie.preorder().tokens[first:end].tolist():
            got[t] = cls
    ca, cb = _classes(trie, qa, x), _classes(trie, qb, y)
    want = {t: ca.get(t, 1) for t in set(ca) | set(cb) if ca.get(t, 1) != cb.get(t, 1)}
    assert got == want


@pytest.mark.parametrize("same", [True, False])
def test_first_byte_diff_tells_phases_apart(compiled, same) -> None:
    """Walks that meet in one DFA state (or equivalent ones) are alike only in the same phase:
    from q0 and q1, `ca` reaches q2 in both, but only from q1 (accepting) could the lexeme
    have ended before `a` (a start byte), so `ca!` dies there (dead) and leaves from q1."""
    from structgen.constraints.grammar import _Bisimilar

    table = np.full((3, 256), -1, np.int32)
    table[0, ord("c")], table[1, ord("c")] = 0, 1
    table[0, ord("a")] = table[1, ord("a")] = 2
    dfa = ByteDFA(table, np.array([False, True, False]), 0)
    starts = np.zeros(256, bool)
    starts[ord("a")] = True
    trie = TokenTrie([b"c", b"ca", b"ca!", b"cc"])
    qa = _FirstByteWalk(dfa, starts)
    qb = qa if same else _FirstByteWalk(ByteDFA(table.copy(), dfa.accepting.copy(), 0), starts)
    search = None if same else _Bisimilar(qa, qb).search()  # (held while the walk runs)
    rows = trie.preorder().first_byte_diff(qa.addresses, qb.addresses,
                                           None if same else search.addresses, 0, 3, 10**6)
    got = {t: cls for first, end, cls in rows.tolist()
           for t in trie.preorder().tokens[first:end].tolist()}
    assert got == {2: 1}  # `ca!`: dead from q0, may leave from q1


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.binary(min_size=1, max_size=5), min_size=1, max_size=30),
       byte=st.integers(0, 255))
def test_preorder_is_its_definition(words: list[bytes], byte: int) -> None:
    """Node i's path is its ancestors' bytes and its own; its subtree is the nodes up to
    end[i] (all deeper); the tokens at it are exactly those spelled by its path."""
    for trie, spelled in ((TokenTrie(words), words),
                          (TokenTrie(words).below(byte),
                           [w[1:] if w[:1] == bytes([byte]) else b"" for w in words])):
        pre = trie.preorder()
        n = len(pre.byte)
        assert n == trie.n_nodes and pre.tok_start[-1] == trie.n_tokens
        path: list[int] = []
        for i in range(n):
            d = int(pre.depth[i])
            assert d <= len(path)
            path[d:] = [int(pre.byte[i])]
            end = int(pre.end[i])
            assert all(pre.depth[j] > d for j in range(i + 1, end))
            assert end == n or pre.depth[end] <= d
            got = sorted(pre.tokens[pre.tok_start[i]:pre.tok_start[i + 1]].tolist())
            assert got == sorted(k for k, w in enumerate(spelled) if w == bytes(path))
            below = pre.tokens[pre.tok_start[i]:pre.tok_start[end]].tolist()
            assert sorted(below) == sorted(k for k, w in enumerate(spelled)
                                           if w.startswith(bytes(path)))


@pytest.mark.model
def test_first_byte_walks_on_smollm2(compiled, smollm2_vocab, monkeypatch) -> None:
    """The walks `_SharedLexeme.split` makes: string content and a key literal, from several
    DFA states, over the whole vocabulary and a child view, with the absorbing state."""
    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ',:}] \n"']] = True
    root = _root_view(smollm2_vocab)
    views = [root.local_trie, root.child(ord('"')).local_trie, root.child(ord("a")).local_trie]
    for pattern in (r'"([^"\\]|\\.){0,40}"', r'"name"', r'[a-z]+[0-9]*'):
        dfa = regex_to_dfa(pattern)
        quick = _FirstByteWalk(dfa, starts)
        for state in range(min(dfa.n_states, 6)):
            for trie in views:
                want = _numpy_walk(trie, quick, 3 * state, None, monkeypatch)
                assert _pairs(*trie.walk(quick, 3 * state)) == _pairs(*want)


@pytest.mark.model
def test_regex_masks_on_smollm2_use_the_compiled_walk(compiled, smollm2_vocab, monkeypatch) -> None:
    from structgen.constraints.regex import DFAAutomaton
    automaton = DFAAutomaton(regex_to_dfa(r"[A-Za-z_][A-Za-z0-9_]{0,8}( = [0-9]+)?"),
                             smollm2_vocab)
    trie = trie_for(smollm2_vocab)
    for state in range(automaton.dfa.n_states):
        want = _numpy_walk(trie, automaton, state, None, monkeypatch)
        assert _pairs(*trie.walk(automaton, state)) == _pairs(*want)


def test_falls_back_without_a_compiler(monkeypatch, tmp_path) -> None:
    """No compiler: `available()` is False with the reason, and walks stay numpy's."""
    monkeypatch.setenv("STRUCTGEN_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.delenv("STRUCTGEN_NATIVE", raising=False)
    native.reset()
    try:
        assert not native.available()
        assert native.reason and "not built" in native.reason
        trie = TokenTrie([b"ab", b"b"])
        source = _Table(np.array([[0] * 256, [1] * 256]), 1, -1)
        assert sorted(trie.walk(source, 0)[0].tolist()) == [0, 1]
    finally:
        native.reset()


def test_disabled_by_environment(monkeypatch) -> None:
    monkeypatch.setenv("STRUCTGEN_NATIVE", "0")
    native.reset()
    try:
        assert not native.available() and "STRUCTGEN_NATIVE" in native.reason
    finally:
        native.reset()


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_builds_into_an_empty_cache(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STRUCTGEN_CACHE", str(tmp_path))
    monkeypatch.delenv("STRUCTGEN_NATIVE", raising=False)
    native.reset()
    try:
        assert native.available(), native.reason
        assert [p.suffix for p in (tmp_path / "native").iterdir()] == [".so"]
    finally:
        native.reset()


def test_large_results_survive_later_walks(compiled) -> None:
    """A walk that keeps most tokens hands out its buffers (no copy): the next walk must
    write elsewhere."""
    words = [bytes([a, b]) for a in range(97, 123) for b in range(97, 123)]
    trie = TokenTrie(words)
    keep = _Table(np.array([[0] * 256, [1] * 256, [2] * 256]), 2, -1)  # state 0 keeps all
    move = _Table(np.array([[1] * 256, [1] * 256, [2] * 256]), 2, -1)  # ... ends in 1
    ids, states = trie.walk(keep, 0)
    saved = (ids.copy(), states.copy())
    assert len(ids) == len(words)
    for _ in range(3):
        trie.walk(move, 0)
    assert np.array_equal(ids, saved[0]) and np.array_equal(states, saved[1])
    assert set(states.tolist()) == {0}
