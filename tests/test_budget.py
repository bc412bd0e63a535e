"""Budget-aware decoding: with max_tokens, finish a valid output whenever one fits."""
from __future__ import annotations

import re

import pytest

import structgen
from structgen.constraints.base import spell

pytestmark = pytest.mark.model


def test_spell_is_fewest_tokens(smollm2_vocab) -> None:
    words = {b for i, b in enumerate(smollm2_vocab.token_bytes) if b and i not in smollm2_vocab.special_ids}
    chunks = spell(smollm2_vocab, b"2024-01-31")
    assert chunks is not None and b"".join(chunks) == b"2024-01-31"
    assert all(c in words for c in chunks)
    # a brute-force lower bound: no split into fewer vocabulary words exists
    def fewest(data: bytes) -> int:
        best = [0] + [10**9] * len(data)
        for i in range(len(data)):
            for j in range(i + 1, len(data) + 1):
                if data[i:j] in words:
                    best[j] = min(best[j], best[i] + 1)
        return best[-1]
    assert len(chunks) == fewest(b"2024-01-31")
    assert spell(smollm2_vocab, b"") == []


def test_plan_shrinks_along_itself(smollm2_vocab) -> None:
    """Taking a plan's first token leaves a state that needs at most one token less."""
    automaton = structgen.Regex(r"\{\"id\": \d{3}, \"tags\": \[(\"[a-z]{2,5}\", ){1,3}\]\}").compile(smollm2_vocab)
    state = automaton.start
    need = automaton.tokens_to_complete(state)
    while need:
        data = automaton.completion_bytes(state)
        first = spell(smollm2_vocab, data)[0]
        token = smollm2_vocab.token_bytes.index(first)
        state = automaton.advance(state, token)
        assert automaton.tokens_to_complete(state) <= need - 1
        need = automaton.tokens_to_complete(state)
    assert automaton.is_accepting(state)


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 0), (1.0, 1), (1.2, 2)])
def test_regex_finishes_within_tight_budget(smollm2, temperature, seed) -> None:
    pattern = r"[A-Z][a-z]{2,12}( [A-Z][a-z]{2,12}){0,3}, [A-Z]{2} \d{5}"
    automaton = structgen.Regex(pattern).compile(smollm2.vocab)
    need = automaton.tokens_to_complete(automaton.start)
    for budget in (need, need + 2):
        result = structgen.generate(smollm2, "Ship to: ", structgen.Regex(pattern), max_tokens=budget,
                                    temperature=temperature, seed=seed)
        assert result.finished, (budget, result.text)
        assert len(result.tokens) <= budget
        assert re.fullmatch(pattern, result.text)


def test_impossible_budget_raises_before_generating(smollm2) -> None:
    longest = max(len(b) for b in smollm2.vocab.token_bytes)
    pattern = "x{%d}" % (3 * longest)  # needs at least 3 tokens whatever the spelling
    with pytest.raises(structgen.GenerationError, match="max_tokens=2 is too small"):
        structgen.generate(smollm2, "x", structgen.Regex(pattern), max_tokens=2)


def test_budget_finish_reason(smollm2) -> None:
    """An unbounded pattern runs until the budget and still ends on a complete match."""
    result = structgen.generate(smollm2, "Digits: 1", structgen.Regex(r"\d+"), max_tokens=5)
    assert result.finished and result.finish_reason in ("budget", "eos")
    assert re.fullmatch(r"\d+", result.text) and len(result.tokens) <= 5
