"""Budget re-choice (`loop._within_budget`): the greedy walk in logit order picks what
repeated masked argmaxes would (ties by id), and the plan token when nothing else fits."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen.decoding.loop import _within_budget
from structgen.decoding.sampling import SamplingParams, choose

GREEDY = SamplingParams()


class Feasible:
    """An automaton stub: state 0, token t leads to state t + 1, which needs `need[t]` more
    tokens; the plan token is `plan`."""

    def __init__(self, need: list[int], plan: int) -> None:
        self.need, self.plan = need, plan

    def advance(self, state: int, token: int) -> int:
        return token + 1

    def tokens_to_complete(self, state: int) -> int:
        return self.need[state - 1]

    def mask(self, state: int) -> torch.Tensor:
        return torch.ones(len(self.need), dtype=torch.bool)

    def plan_token(self, state: int) -> int:
        return self.plan


def _naive(automaton: Feasible, mask: torch.Tensor, logits: torch.Tensor, left: int) -> int:
    mask = mask.clone()
    while mask.any():
        token = choose(logits, mask, GREEDY)
        if automaton.tokens_to_complete(automaton.advance(0, token)) <= left:
            return token
        mask[token] = False
    return automaton.plan


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 40), st.integers(0, 2**31), st.integers(0, 5))
def test_greedy_rechoice_equals_repeated_argmax(n, seed, left):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 4, (n,), generator=gen).float()  # many ties
    mask = torch.rand(n, generator=gen) < 0.7
    mask[int(torch.randint(0, n, (1,), generator=gen))] = True
    need = torch.randint(0, 8, (n,), generator=gen).tolist()
    automaton = Feasible(need, plan=int(mask.nonzero()[0]))
    first = choose(logits, mask, GREEDY)
    token, state = _within_budget(automaton, 0, first, mask, logits, GREEDY, None, left)
    assert token == _naive(automaton, mask, logits, left)
    assert state == token + 1
