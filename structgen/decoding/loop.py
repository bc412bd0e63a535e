"""The decode loop: one forward pass per token over a KV cache, masks from the constraint.

Our own loop rather than `model.generate`, so that constraint state, masks and (next) speculative
verification stay in one small, visible step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..constraints.base import DONE, Constraint
from ..errors import GenerationError
from .sampling import SamplingParams, choose

Message = dict[str, str]


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0
    mask_seconds: float = 0.0
    forward_passes: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**self.__dict__, "tokens_per_s": self.tokens_per_s}


@dataclass
class GenerationResult:
    """`finished` is True only when the output is complete: EOS chosen, or the constraint
    admits nothing but the end. A run cut by `max_tokens` is never finished."""

    text: str
    tokens: list[int]
    finished: bool
    finish_reason: str  # "eos" | "complete" | "max_tokens"
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __str__(self) -> str:
        return self.text


def encode_prompt(tokenizer: Any, prompt: str | Sequence[Message]) -> list[int]:
    """Raw text is tokenized as is (with the tokenizer's usual BOS); chat messages get the
    tokenizer's chat template with the generation prompt."""
    if isinstance(prompt, str):
        return list(tokenizer.encode(prompt))
    if not getattr(tokenizer, "chat_template", None):
        raise GenerationError(
            "this tokenizer has no chat template: pass the prompt as a plain string instead of messages"
        )
    text = tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False))


class _Forward:
    """Incremental forward passes over a growing KV cache."""

    def __init__(self, model: Any, stats: GenerationStats) -> None:
        from transformers import DynamicCache

        self.model = model
        self.device = next(model.parameters()).device
        self.cache = DynamicCache(config=model.config)
        self.stats = stats

    @torch.inference_mode()
    def __call__(self, ids: Sequence[int]) -> torch.Tensor:
        """Logits (float32, on CPU) after feeding `ids`, for the last position."""
        t = time.perf_counter()
        x = torch.tensor([list(ids)], device=self.device)
        out = self.model(input_ids=x, past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        logits = out.logits[0, -1].float().cpu()
        self.stats.forward_seconds += time.perf_counter() - t
        self.stats.forward_passes += 1
        return logits


def generate(
    model: Any,
    prompt: str | Sequence[Message],
    constraint: Constraint | None = None,
    *,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
) -> GenerationResult:
    """Generate from a `LoadedModel` (see `structgen.load_model`), optionally constrained."""
    if isinstance(model, str):
        from ..models import load_model

        model = load_model(model)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    params = SamplingParams(temperature, top_p, top_k)
    vocab = model.vocab
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    stats = GenerationStats()
    start_time = time.perf_counter()

    automaton = constraint.compile(vocab) if constraint is not None else None
    state = automaton.start if automaton is not None else None
    free_mask = torch.zeros(vocab.width, dtype=torch.bool)
    free_mask[: len(model.tokenizer)] = True

    prompt_ids = encode_prompt(model.tokenizer, prompt)
    stats.prompt_tokens = len(prompt_ids)
    forward = _Forward(model.model, stats)
    logits = forward(prompt_ids)
    tokens: list[int] = []
    reason = "max_tokens"
    while True:
        if automaton is not None and automaton.only_eos(state):
            reason = "complete"
            break
        if len(tokens) >= max_tokens:
            break
        t = time.perf_counter()
        mask = automaton.mask(state) if automaton is not None else free_mask
        stats.mask_seconds += time.perf_counter() - t
        if not bool(mask.any()):
            raise GenerationError(f"the constraint allows no token after {len(tokens)} tokens")
        token = choose(logits, mask, params, generator)
        if token in vocab.eos_ids:
            reason = "eos"
            break
        if automaton is not None:
            state = automaton.advance(state, token)
            assert state is not None and state is not DONE
        tokens.append(token)
        if len(tokens) < max_tokens:
            logits = forward([token])

    stats.new_tokens = len(tokens)
    stats.seconds = time.perf_counter() - start_time
    text = vocab.decode(tokens).decode("utf-8", errors="replace")
    return GenerationResult(text, tokens, reason != "max_tokens", reason, stats)
