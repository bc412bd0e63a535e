"""End-to-end regex-constrained generation with the real SmolLM2: finished outputs always match."""
from __future__ import annotations

import re

import pytest

from structgen import GenerationResult, Regex, generate
from structgen.automata.bytedfa import DEAD

pytestmark = [pytest.mark.model, pytest.mark.usefixtures("one_thread")]

CASES = [
    (r"\d{4}-\d{2}-\d{2}", "The date of the moon landing in ISO format is "),
    (r"[a-z]{2,8}\.[a-z]{2,8}@[a-z]{3,8}\.(com|org|net)", "Write an email address: "),
    (r"\(\d{3}\) \d{3}-\d{4}", "Call us at "),
    (r"[A-Za-z_][A-Za-z0-9_]{0,11}", "A good Python variable name for a counter: "),
    (r"(yes|no|maybe)", "Is the sky blue? Answer: "),
    (r"[a-z]{3,6}", "Three letters: "),
    (r"(café|naïve|日本語) [αβγ]{2}", "Pick a word: "),
    (r"-?\d{1,3}(\.\d{1,2})?", "Temperature: "),
]



MESSAGES = [{"role": "user", "content": "Give me one short answer."}]


def _check(result: GenerationResult, vocab, pattern: str, max_tokens: int) -> None:
    assert isinstance(result.tokens, list) and len(result.tokens) <= max_tokens
    assert result.stats.new_tokens == len(result.tokens) and result.stats.prompt_tokens > 0
    assert result.finish_reason in ("eos", "complete", "max_tokens")
    assert result.finished == (result.finish_reason != "max_tokens")
    assert not set(result.tokens) & vocab.special_ids
    dfa = Regex(pattern).dfa
    state = dfa.walk(dfa.initial, vocab.decode(result.tokens))
    assert state != DEAD  # every run, cut or not, is a prefix of a match
    if result.finished:
        assert dfa.accepting[state]
        assert re.fullmatch(pattern, result.text), (pattern, result.text)


@pytest.mark.parametrize("pattern, prompt", CASES)
def test_greedy_outputs_match(smollm2, pattern, prompt):
    result = generate(smollm2, prompt, Regex(pattern), max_tokens=40)
    _check(result, smollm2.vocab, pattern, 40)
    assert result.finished, result
    assert re.fullmatch(pattern, result.text)
    # the tokens decode to exactly the text
    assert smollm2.vocab.decode(result.tokens).decode() == result.text


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("pattern", [CASES[0][0], CASES[1][0], CASES[6][0], r"[a-z]{3,6}( [a-z]{3,6}){0,2}"])
def test_sampled_outputs_match(smollm2, pattern, seed):
    temperature = (0.8, 0.9, 1.0)[seed]
    prompt = MESSAGES if seed % 2 else "Answer: "
    result = generate(smollm2, prompt, Regex(pattern), max_tokens=40, temperature=temperature, seed=seed)
    _check(result, smollm2.vocab, pattern, 40)
    assert result.finished, result
    assert re.fullmatch(pattern, result.text)


def test_sampling_is_reproducible_with_a_seed(smollm2):
    kw = dict(max_tokens=12, temperature=1.0, seed=7)
    a = generate(smollm2, "Name: ", Regex("[A-Z][a-z]{2,10}"), **kw)
    b = generate(smollm2, "Name: ", Regex("[A-Z][a-z]{2,10}"), **kw)
    assert a.tokens == b.tokens


def test_chat_prompt(smollm2):
    result = generate(smollm2, MESSAGES, Regex(r"(red|green|blue)"), max_tokens=10)
    assert result.finished and result.text in ("red", "green", "blue")


def test_cut_by_max_tokens_is_not_finished(smollm2):
    pattern = "[a-z]{20,40}"
    result = generate(smollm2, "Letters: ", Regex(pattern), max_tokens=3)
    assert result.finished is False
    assert result.finish_reason == "max_tokens"
    assert len(result.tokens) == 3 and result.stats.new_tokens == 3
    dfa = Regex(pattern).dfa
    state = dfa.walk(dfa.initial, smollm2.vocab.decode(result.tokens))
    assert state != DEAD and not dfa.accepting[state]  # a proper prefix of a match
    assert not re.fullmatch(pattern, result.text)


def test_complete_stops_without_sampling_eos(smollm2):
    """A pattern whose only continuation is the end finishes as 'complete' (no EOS token)."""
    result = generate(smollm2, "Say it: ", Regex("OK"), max_tokens=5)
    assert result.finished and result.finish_reason == "complete" and result.text == "OK"
