"""Turning masked logits into a token: greedy, temperature, top-k, top-p.

Kept apart from the loop so the speculative verifier applies exactly the same processing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    """temperature 0 means greedy; top_k 0 and top_p 1 mean no truncation."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """float32 logits of the mask's width with disallowed ids at -inf.

    `logits` may be narrower than `mask` (tokenizer padding): missing ids count as disallowed.
    """
    x = torch.full(mask.shape, float("-inf"), dtype=torch.float32)
    width = min(len(logits), len(mask))
    x[:width] = logits[:width].float()
    return x.masked_fill(~mask, float("-inf"))


def masked_probs(logits: torch.Tensor, mask: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Next-token distribution over the allowed tokens after temperature/top-k/top-p (HF order)."""
    x = masked_logits(logits, mask)
    if params.temperature > 0:
        x = x / params.temperature
    if params.top_k > 0 and params.top_k < len(x):
        kth = torch.topk(x, params.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if params.top_p < 1:
        sorted_p, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_p, dim=-1)
        drop = cumulative - sorted_p >= params.top_p  # keep the smallest prefix reaching top_p
        probs = probs.clone()
        probs[order[drop]] = 0
        probs = probs / probs.sum()
    return probs


def choose(
    logits: torch.Tensor,
    mask: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None = None,
) -> int:
    """Pick the next token among the allowed ones."""
    if params.greedy:
        return int(torch.argmax(masked_logits(logits, mask)))
    probs = masked_probs(logits, mask, params)
    return int(torch.multinomial(probs, 1, generator=generator))
