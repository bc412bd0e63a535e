"""`TokenTrie.walk_many` (batched multi-source walk) against `walk` and a brute-force byte check.

And `DFAAutomaton`'s precomputed masks (batch / eager dense walks / lazy leftovers) against the
same references.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen.automata.bytedfa import DEAD
from structgen.constraints.regex import DFAAutomaton, Regex
from structgen.vocab.trie import trie_for

PATTERNS = [
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}",
    r"\+?1?[ -]?\(?[0-9]{3}\)?[ -]?[0-9]{3}-[0-9]{4}",
    r"[A-Za-z_][A-Za-z0-9_]{0,31}",
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    r"[αβγδ]{1,5} (café|naïve|日本語)",
    r"(apple|banana|cherry|date|elderberry|fig|grape|kiwi|lemon|mango)",
    r"[0-9a-f]{8}-[0-9a-f]{4}",
    r"\"([^\"\\\\]|\\\\.){0,6}\"",
    r"x",
]

# Small DFAs only: the brute-force check walks every token from every state in Python.
BRUTE_PATTERNS = [
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    r"[A-Za-z_][A-Za-z0-9_]{0,5}",
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?",
    r"[αβγδ]{1,2} (café|日本語)",
    r"(apple|banana|cherry) ?[a-z]{0,3}",
    r"\"([^\"\\\\]|\\\\.){0,3}\"",
]


def _sorted(a: np.ndarray) -> np.ndarray:
    return np.sort(np.asarray(a, np.int64))


def _check_batch(vocab, pattern: str) -> None:
    automaton = Regex(pattern).compile(vocab)
    trie = trie_for(vocab)
    n = automaton.dfa.n_states
    states = np.arange(n)
    full = trie.walk_many(automaton, states, with_states=True)
    assert not full.dropped.any()
    split = trie.walk_many(automaton, states, dense_fraction=DFAAutomaton.DENSE_FRACTION)
    for s in range(n):
        ids, ends = trie.walk(automaton, s)
        order = np.argsort(ids, kind="stable")
        b_ids, b_ends = full.ids(s), full.end_states(s)
        b_order = np.argsort(b_ids, kind="stable")
        assert np.array_equal(ids[order], b_ids[b_order]), (pattern, s)
        assert np.array_equal(ends[order], b_ends[b_order]), (pattern, s)
        if split.dropped[s]:
            assert len(split.ids(s)) == 0
        else:
            assert np.array_equal(_sorted(split.ids(s)), ids[order]), (pattern, s)
    # Any subset / order of start states, duplicates and the sink included.
    picks = np.array([n - 1, 0, automaton.sink, 0] + list(range(0, n, 3)))
    some = trie.walk_many(automaton, picks)
    for i, s in enumerate(picks.tolist()):
        expect = trie.walk(automaton, s)[0] if s != automaton.sink else np.empty(0, np.int64)
        assert np.array_equal(_sorted(some.ids(i)), _sorted(expect)), (pattern, s)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_batch_equals_walk_smollm2(smollm2_vocab, pattern):
    _check_batch(smollm2_vocab, pattern)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_batch_equals_walk_gemma(gemma_vocab, pattern):
    _check_batch(gemma_vocab, pattern)


def _brute(automaton, vocab, state: int) -> np.ndarray:
    dfa = automaton.dfa
    special = set(vocab.special_ids)
    return np.array(
        [i for i, b in enumerate(vocab.token_bytes)
         if b and i not in special and dfa.walk(state, b) != DEAD],
        np.int64,
    )


@pytest.mark.parametrize("pattern", BRUTE_PATTERNS)
def test_batch_brute_force_smollm2(smollm2_vocab, pattern):
    vocab = smollm2_vocab
    automaton = Regex(pattern).compile(vocab)
    n = automaton.dfa.n_states
    batch = trie_for(vocab).walk_many(automaton, np.arange(n))
    for s in range(n):
        assert np.array_equal(_sorted(batch.ids(s)), _brute(automaton, vocab, s)), (pattern, s)


@pytest.mark.parametrize("min_dense,budget", [(16, 3_000_000), (1, 0), (0, 0)])
def test_automaton_precompute_paths(smollm2_vocab, monkeypatch, min_dense, budget):
    """Batch, eager dense and lazy states all give the brute-force allowed ids (+ EOS)."""
    vocab = smollm2_vocab
    monkeypatch.setattr(DFAAutomaton, "MIN_DENSE", min_dense)
    monkeypatch.setattr(DFAAutomaton, "DENSE_NODE_BUDGET", budget)
    eos = set(vocab.eos_ids)
    for pattern in [r"[A-Za-z_][A-Za-z0-9_]{0,5}", r"[0-9]{2}-[a-z]{1,3}"]:
        automaton = Regex(pattern).compile(vocab)
        for s in range(automaton.dfa.n_states):
            expect = set(_brute(automaton, vocab, s).tolist())
            if automaton.is_accepting(s):
                expect |= eos
            got = automaton.allowed_ids(s)
            assert len(got) == len(expect) and set(got.tolist()) == expect, (pattern, s)
            mask = automaton.mask(s)
            assert int(mask.sum()) == len(expect)
            assert automaton.mask(s) is mask  # cached


def test_automaton_too_many_states_is_lazy(smollm2_vocab, monkeypatch):
    monkeypatch.setattr(DFAAutomaton, "MAX_BATCH_STATES", 2)
    automaton = Regex(r"[0-9]{4}").compile(smollm2_vocab)
    ids = automaton.allowed_ids(automaton.start)
    assert automaton._precomputed == {}
    assert np.array_equal(_sorted(ids), _brute(automaton, smollm2_vocab, automaton.start))


@pytest.mark.parametrize("pattern", BRUTE_PATTERNS)
def test_walk_each_equals_walk(smollm2_vocab, pattern):
    """The depth-first walk (small leaving tries) finds the tokens the level walk finds, from
    every state, on a trie of a sample of the vocabulary."""
    from structgen.vocab.trie import TokenTrie

    automaton = Regex(pattern).compile(smollm2_vocab)
    rng = np.random.default_rng(3)
    only = sorted(rng.choice(smollm2_vocab.width, 3000, replace=False).tolist())
    trie = TokenTrie(smollm2_vocab.token_bytes, only=only)

    def next_state(s: int, b: int, siblings: np.ndarray) -> int:
        assert b in siblings.tolist()
        return int(automaton.step(np.array([s]), np.array([b]))[0])

    for s in range(automaton.dfa.n_states):
        each = trie.walk_each(next_state, s, automaton.sink)
        assert len(each) == len(set(each))
        assert np.array_equal(_sorted(each), _sorted(trie.walk(automaton, s)[0])), (pattern, s)


def test_relabelled_trie_walks_to_the_new_labels(smollm2_vocab):
    """A relabelled trie (views walk one of local indices) finds the same tokens, as labels."""
    automaton = Regex(BRUTE_PATTERNS[1]).compile(smollm2_vocab)
    trie = trie_for(smollm2_vocab)
    shifted = trie.relabelled(lambda ids: ids + 7)
    for s in range(automaton.dfa.n_states):
        ids, ends = trie.walk(automaton, s)
        labels, ends2 = shifted.walk(automaton, s)
        assert np.array_equal(labels, ids + 7) and np.array_equal(ends, ends2)


@settings(max_examples=150, deadline=None)
@given(words=st.lists(st.lists(st.sampled_from(b"ab\xc3\x00"), max_size=6).map(bytes), max_size=40))
def test_small_trie_built_from_its_words_is_the_level_built_one(words):
    """A small trie (levels deferred) counts its nodes and builds `walk_each`'s form from the
    sorted words directly: both equal what the level arrays give (duplicate spellings and
    empty words included)."""
    from structgen.vocab.trie import TokenTrie

    lazy = TokenTrie(words)
    assert lazy._levels is None and lazy.n_tokens <= TokenTrie.LAZY_LEVELS
    direct = lazy._as_tuples()
    assert lazy._levels is None  # the direct build needs no levels
    assert lazy.n_nodes == sum(len(level.byte) for level in lazy.levels)
    assert _groups_equal(direct, lazy._as_tuples())
    prefixes = {w[:d] for w in words for d in range(1, len(w) + 1)}
    assert lazy.n_nodes == len(prefixes)


def _groups_equal(a: tuple, b: tuple) -> bool:
    """Nested groups equal, their byte arrays included (tuples compare arrays by identity)."""
    (nodes_a, bytes_a), (nodes_b, bytes_b) = a, b
    return np.array_equal(bytes_a, bytes_b) and len(nodes_a) == len(nodes_b) and all(
        x[:2] == y[:2] and ((x[2] is None) == (y[2] is None))
        and (x[2] is None or _groups_equal(x[2], y[2]))
        for x, y in zip(nodes_a, nodes_b))
