"""`Matcher` against a brute-force oracle: a token is allowed iff the DFA reads its bytes without dying."""
from __future__ import annotations

import random
import re
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structgen import Matcher, Regex
from structgen.automata.bytedfa import DEAD
from structgen.constraints.base import DONE

pytestmark = pytest.mark.model

# -------------------------------------------------------------------------- regex strategy
# Pieces chosen to interact with real vocabularies: words tokens span, spaces, digits, partial
# UTF-8 characters (non-ASCII literals and classes), optional and repeated parts.
PIECES = ["hello", " world", "the", " ", "\\d", "\\d{2}", "[a-z]", "[a-z]+", "[A-Z]", "\\.", ",",
          "é", "日本", "😀", "[αβγ]", "[^a-z]", "\\s", "\\w", "\\W", "\\D", ".", "(?i:ok)", "ing",
          "\\n", "[0-9a-f]", "-", "\\(", "\"", ": "]


def _quantify(node):
    return st.tuples(st.just(node), st.sampled_from(["", "", "?", "*", "+", "{1,3}", "{2}"])).map(
        lambda t: "(?:" + t[0] + ")" + t[1] if t[1] else t[0])


def _combine(children):
    return st.one_of(
        st.lists(children, min_size=2, max_size=4).map("".join),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
        children.flatmap(_quantify),
    )


token_regexes = st.recursive(st.sampled_from(PIECES), _combine, max_leaves=6)

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# -------------------------------------------------------------------------- oracle

def oracle(dfa, vocab, state, ids) -> set[int]:
    """Ids (among `ids`) allowed in DFA `state`, by walking each token's bytes."""
    table = vocab.token_bytes
    out = {i for i in ids if i not in vocab.special_ids and table[i] and dfa.walk(state, table[i]) != DEAD}
    if dfa.accepting[state]:
        out |= {i for i in ids if i in vocab.eos_ids}
    return out


def check_mask(matcher: Matcher, ids=None) -> None:
    vocab, dfa = matcher.vocab, matcher.automaton.dfa
    mask = matcher.mask()
    assert mask.dtype == torch.bool and mask.shape == (vocab.width,)
    if ids is None:
        ids = range(vocab.width)
        got = set(torch.nonzero(mask).flatten().tolist())
    else:
        got = {i for i in ids if mask[i]}
    assert got == oracle(dfa, vocab, matcher.state, ids)
    specials_on = set(torch.nonzero(mask).flatten().tolist()) & vocab.special_ids
    assert specials_on == (set(vocab.eos_ids) if matcher.is_accepting() else set())


def token_walk(matcher: Matcher, rng: random.Random, steps: int, ids=None) -> None:
    """Consume random allowed content tokens, checking the mask and the state at each step."""
    vocab, dfa = matcher.vocab, matcher.automaton.dfa
    consumed: list[int] = []
    for _ in range(steps):
        check_mask(matcher, ids)
        allowed = [i for i in torch.nonzero(matcher.mask()).flatten().tolist() if i not in vocab.eos_ids]
        if not allowed:
            assert matcher.is_accepting()
            break
        tok = rng.choice(allowed)
        assert matcher.consume(tok)
        consumed.append(tok)
        assert matcher.state == dfa.walk(dfa.initial, vocab.decode(consumed))
        assert matcher.is_accepting() == bool(dfa.accepting[matcher.state])


@SETTINGS
@given(token_regexes, st.integers(0, 2**32 - 1))
def test_mask_equals_oracle_smollm2(smollm2, pattern, seed):
    re.compile(pattern)
    matcher = Matcher(Regex(pattern), smollm2)
    rng = random.Random(seed)
    token_walk(matcher, rng, steps=4)
    # also states only reachable mid-character / mid-token: random byte walks in the DFA
    dfa = matcher.automaton.dfa
    for _ in range(3):
        state = dfa.initial
        for _ in range(rng.randint(1, 8)):
            live = [b for b in range(256) if dfa.rows[state][b] != DEAD]
            if not live:
                break
            state = dfa.rows[state][rng.choice(live)]
        got = set(np.flatnonzero(matcher.automaton.mask(state).numpy()).tolist())
        assert got == oracle(dfa, smollm2.vocab, state, range(smollm2.vocab.width))


@pytest.fixture(scope="module")
def gemma_sample(gemma):
    """A few thousand Gemma ids: random content tokens plus EOS and some special ids."""
    rng = random.Random(1234)
    vocab = gemma.vocab
    ids = set(rng.sample(range(vocab.width), 3000))
    ids |= set(vocab.eos_ids) | set(rng.sample(sorted(vocab.special_ids), 50))
    # tokens with non-ASCII bytes, so partial characters are exercised
    non_ascii = [i for i in range(vocab.width) if vocab.token_bytes[i] and max(vocab.token_bytes[i]) >= 0x80]
    ids |= set(rng.sample(non_ascii, 1000))
    return sorted(ids)


@pytest.mark.gemma
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(token_regexes, st.integers(0, 2**32 - 1))
def test_mask_equals_oracle_gemma_sample(gemma, gemma_sample, pattern, seed):
    matcher = Matcher(Regex(pattern), gemma)
    token_walk(matcher, random.Random(seed), steps=3, ids=gemma_sample)


# -------------------------------------------------------------------------- matcher semantics

def test_mask_width_is_logits_width(smollm2):
    m = Matcher(Regex("[a-z]+"), smollm2)
    width = smollm2.model.get_output_embeddings().weight.shape[0]
    assert m.mask().shape == (width,) == (smollm2.vocab.width,)
    with torch.inference_mode():
        logits = smollm2.model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert logits.shape[-1] == m.mask().shape[0]


@pytest.mark.gemma
def test_mask_width_is_logits_width_gemma(gemma):
    m = Matcher(Regex("[a-z]+"), gemma)
    assert m.mask().shape == (gemma.model.get_output_embeddings().weight.shape[0],)


def _tok(vocab, text: str) -> int:
    ids = [i for i, b in enumerate(vocab.token_bytes) if b == text.encode() and i not in vocab.special_ids]
    assert ids, text
    return ids[0]


def test_consume_rollback_accepting(smollm2):
    vocab = smollm2.vocab
    (eos,) = vocab.eos_ids
    m = Matcher(Regex(r"ab(c|d)"), smollm2)
    a, b, c, x = (_tok(vocab, t) for t in "abcx")
    start = m.state
    assert not m.is_accepting() and not m.mask()[eos]
    # disallowed tokens: False and no change
    for bad in (x, c, eos, vocab.width + 5, -1, sorted(vocab.special_ids - vocab.eos_ids)[0]):
        assert m.consume(bad) is False
        assert m.state == start
    assert m.consume(a) and m.consume(b)
    assert not m.is_accepting() and not m.consume(eos)
    assert m.consume(c) and m.is_accepting()
    assert m.mask()[eos] and int(m.mask().sum()) == 1
    assert m.automaton.only_eos(m.state)
    m.rollback(1)
    assert not m.is_accepting()
    assert m.consume(_tok(vocab, "d")) and m.is_accepting()
    assert m.consume(eos) and m.is_terminated() and m.is_accepting()
    assert m.state is DONE
    assert not m.mask().any()
    assert not m.consume(eos) and not m.consume(a)
    m.rollback(1)
    assert not m.is_terminated() and m.is_accepting()
    with pytest.raises(ValueError):
        m.rollback(4)
    m.rollback(3)
    assert m.state == start
    m.rollback(0)
    assert m.state == start
    m.consume(a)
    m.reset()
    assert m.state == start


def test_token_spanning_a_whole_match(smollm2):
    vocab = smollm2.vocab
    m = Matcher(Regex("hello( world)?"), smollm2)
    hello = _tok(vocab, "hello")
    assert m.mask()[hello]
    assert m.consume(hello) and m.is_accepting()
    world = _tok(vocab, " world")
    assert m.mask()[world] and m.mask()[next(iter(vocab.eos_ids))]
    assert m.consume(world) and m.is_accepting()


def test_cached_mask_is_fast(smollm2):
    m = Matcher(Regex(r"[a-z]+@[a-z]+\.(com|org)"), smollm2)
    first = m.mask()
    assert m.mask() is first  # cached, not recomputed
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        m.mask()
    per_call = (time.perf_counter() - t) / n
    assert per_call < 50e-6, f"cached mask() took {per_call * 1e6:.1f} µs"


# -------------------------------------------------------------------------- forced tokens

def check_forced(matcher: Matcher, tokenizer) -> list[int]:
    vocab, automaton = matcher.vocab, matcher.automaton
    forced = automaton.forced_bytes(matcher.state)
    ids = matcher.forced_tokens()
    data = vocab.decode(ids)
    assert forced.startswith(data)
    probe = Matcher(automaton, matcher.vocab)
    probe._states = list(matcher._states)  # same position, independent copy
    for i in ids:
        assert probe.mask()[i]
        assert probe.consume(i)
    if ids:
        text = data.decode("utf-8")
        assert ids == list(tokenizer.encode(text, add_special_tokens=False))
    return ids


@pytest.mark.parametrize("pattern, expect_prefix", [
    (r'\{"name": "[a-z]+", "age": \d+\}', '{"name": "'),
    (r"hello world, (yes|no)", "hello world, "),
    (r"The answer is: \d+", "The answer is: "),
    (r"日本語 [αβ]", "日本語 "),
    (r"abc", "abc"),
])
def test_forced_tokens_canonical(smollm2, pattern, expect_prefix):
    m = Matcher(Regex(pattern), smollm2)
    ids = check_forced(m, smollm2.tokenizer)
    text = smollm2.vocab.decode(ids).decode()
    assert expect_prefix.startswith(text)
    assert text, "some forced text should be emitted"
    for i in ids:
        assert m.consume(i)
    check_forced(m, smollm2.tokenizer)


@SETTINGS
@given(token_regexes, st.integers(0, 2**32 - 1))
def test_forced_tokens_random(smollm2, pattern, seed):
    m = Matcher(Regex(pattern), smollm2)
    rng = random.Random(seed)
    for _ in range(4):
        check_forced(m, smollm2.tokenizer)
        allowed = [i for i in torch.nonzero(m.mask()).flatten().tolist() if i not in smollm2.vocab.eos_ids]
        if not allowed:
            break
        m.consume(rng.choice(allowed))


def test_forced_tokens_after_eos_and_without_tokenizer(smollm2):
    m = Matcher(Regex("abc"), smollm2.vocab)  # a bare Vocabulary: no canonical tokenization
    assert m.forced_tokens() == []
    m = Matcher(Regex("abc"), smollm2)
    for i in m.forced_tokens():
        m.consume(i)
    assert m.is_accepting()
    assert m.consume(next(iter(smollm2.vocab.eos_ids)))
    assert m.forced_tokens() == []
