"""Speculative sampling is lossless: sampled sequence frequencies match the exact masked law.

No real model: a tabular toy LM (logits depend on the last two tokens) behind the `Scorer`
interface, a five-token vocabulary and a small regex. The exact law of whole outputs is
enumerated from the same rules the plain loop follows (mask, temperature, budget restriction),
and 20k speculative samples are compared with a chi-square test at significance 1e-4.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

import numpy as np
import pytest
import torch

from structgen import Regex
from structgen.decoding import loop
from structgen.decoding.drafters import DraftContext, Drafter, ModelDrafter, Proposal
from structgen.decoding.loop import GenerationStats, _check_budget, decode
from structgen.decoding.sampling import SamplingParams
from structgen.vocab.token_bytes import Vocabulary

EOS = 4
VOCAB = Vocabulary(token_bytes=(b"a", b"b", b"ab", b"c", b""), width=5,
                   eos_ids=frozenset({EOS}), special_ids=frozenset({EOS}))
PATTERN = r"[ab]{1,3}c?"
PROMPT = [0, 1, 3]
TEMPERATURE = 0.9
N = 20_000


def _table(seed: int) -> np.ndarray:
    """Logits for every (second-to-last, last) token pair; index 5 = no token."""
    return np.random.default_rng(seed).normal(0, 1.5, size=(6, 6, VOCAB.width)).astype(np.float32)


TARGET = _table(0)
# the draft model is a noisy copy of the target: acceptance well inside (0, 1)
DRAFT = (TARGET + np.random.default_rng(1).normal(0, 1.0, size=TARGET.shape)).astype(np.float32)


class TableLM:
    """A `Scorer` over a logits table: the cache is just the list of fed tokens."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = torch.from_numpy(table)
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)

    def __call__(self, ids: Sequence[int], n: int, pad: int = 0) -> torch.Tensor:
        self.tokens.extend(ids)
        ends = range(len(self.tokens) - n, len(self.tokens))
        rows = torch.stack([self._after(self.tokens[: e + 1]) for e in ends])
        self.tokens.extend(ids[-1:] * pad)
        return rows

    def _after(self, prefix: Sequence[int]) -> torch.Tensor:
        a = prefix[-2] if len(prefix) > 1 else 5
        return self.table[a, prefix[-1]]

    def crop(self, length: int) -> None:
        del self.tokens[length:]


class CyclicDrafter(Drafter):
    """A deterministic drafter that guesses from a fixed cycle (sometimes right, sometimes
    refused by the constraint): one-hot q."""

    name = "cyclic"

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        cycle = [0, 2, 1, 3, 0, 0, 2]
        at = len(ctx.history) % len(cycle)
        return Proposal((cycle[at:] + cycle)[:k])


def _exact(max_tokens: int) -> dict[tuple[int, ...], float]:
    """Exact law of outputs (tokens, EOS included when chosen) under the plain loop's rules."""
    automaton = Regex(PATTERN).compile(VOCAB)
    planned = _check_budget(automaton, max_tokens)
    law: dict[tuple[int, ...], float] = {}

    def walk(state, out: list[int], prob: float) -> None:
        if automaton.only_eos(state) or len(out) >= max_tokens:
            law[tuple(out)] = law.get(tuple(out), 0.0) + prob
            return
        allowed = [int(t) for t in automaton.allowed_ids(state)]
        if planned:
            left = max_tokens - len(out) - 1
            allowed = [t for t in allowed
                       if (automaton.tokens_to_complete(automaton.advance(state, t)) or 0) <= left
                       and automaton.tokens_to_complete(automaton.advance(state, t)) is not None]
        prefix = PROMPT + out
        a = prefix[-2] if len(prefix) > 1 else 5
        logits = TARGET[a, prefix[-1]].astype(np.float64) / TEMPERATURE
        weights = np.exp(logits[allowed] - logits[allowed].max())
        weights /= weights.sum()
        for t, w in zip(allowed, weights):
            if t == EOS:
                key = tuple(out + [EOS])
                law[key] = law.get(key, 0.0) + prob * w
            else:
                walk(automaton.advance(state, t), out + [t], prob * w)

    walk(automaton.start, [], 1.0)
    return law


def _sample(drafters_factory, max_tokens: int, n: int, seed: int) -> tuple[Counter, GenerationStats]:
    automaton = Regex(PATTERN).compile(VOCAB)
    planned = _check_budget(automaton, max_tokens)
    free = torch.ones(VOCAB.width, dtype=torch.bool)
    params = SamplingParams(temperature=TEMPERATURE)
    generator = torch.Generator().manual_seed(seed)
    counts: Counter = Counter()
    stats = GenerationStats()
    drafters = drafters_factory()
    for _ in range(n):
        tokens, reason = decode(TableLM(TARGET), automaton, PROMPT, VOCAB.eos_ids, free, params,
                                generator, max_tokens, planned, drafters, stats)
        counts[tuple(tokens + [EOS] if reason == "eos" else tokens)] += 1
    return counts, stats


def _chi_square_ok(counts: Counter, law: dict, n: int) -> tuple[bool, float, float]:
    """Pearson chi-square with cells of expected count < 5 pooled; threshold = the 1 - 1e-4
    quantile (Wilson-Hilferty), so a correct sampler fails about once in 10,000 runs."""
    assert set(counts) <= set(law), set(counts) - set(law)  # never an output outside the law
    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for key, p in law.items():
        if p * n >= 5:
            cells.append((counts.get(key, 0), p * n))
        else:
            pooled_obs += counts.get(key, 0)
            pooled_exp += p * n
    if pooled_exp > 0:
        cells.append((pooled_obs, pooled_exp))
    stat = sum((o - e) ** 2 / e for o, e in cells)
    df = len(cells) - 1
    z = 3.719  # standard normal 1 - 1e-4 quantile
    limit = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    return stat <= limit, stat, limit


CASES = {
    "one-hot": (lambda: [CyclicDrafter()], 4),
    "model masked q": (lambda: [ModelDrafter(TableLM(DRAFT), masked=True)], 4),
    "model unmasked q": (lambda: [ModelDrafter(TableLM(DRAFT), masked=False)], 4),
    "chain, tight budget": (lambda: [CyclicDrafter(), ModelDrafter(TableLM(DRAFT))], 2),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sampled_outputs_follow_the_exact_masked_law(case: str) -> None:
    factory, max_tokens = CASES[case]
    law = _exact(max_tokens)
    assert abs(sum(law.values()) - 1) < 1e-9
    counts, stats = _sample(factory, max_tokens, N, seed=list(CASES).index(case))
    ok, stat, limit = _chi_square_ok(counts, law, N)
    assert ok, f"{case}: chi-square {stat:.1f} > {limit:.1f}"
    drafted, accepted = sum(stats.drafted.values()), sum(stats.accepted.values())
    assert drafted >= N and 0 < accepted < drafted  # drafts were really verified, not bypassed


def test_the_test_catches_a_biased_verifier(monkeypatch) -> None:
    """Accepting every allowed draft token (no accept/reject rule) must fail the test."""
    def accept_all(logits, mask, params, generator, draft=None, q=None):
        if draft is not None and bool(mask[draft]):
            return draft
        return loop.choose(logits, mask, params, generator)

    monkeypatch.setattr(loop, "verify_token", accept_all)
    law = _exact(4)
    counts, _ = _sample(CASES["model masked q"][0], 4, 5000, seed=3)
    assert not _chi_square_ok(counts, law, 5000)[0]


def test_exact_law_is_the_plain_loop() -> None:
    """The enumeration above describes what plain decoding samples (no drafters)."""
    for max_tokens in (4, 2):
        law = _exact(max_tokens)
        counts, stats = _sample(lambda: [], max_tokens, 8000, seed=max_tokens)
        assert not stats.drafted
        assert _chi_square_ok(counts, law, 8000)[0]
