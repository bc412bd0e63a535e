"""The decode loop: one forward pass per token over a KV cache, masks from the constraint.

Our own loop rather than `model.generate`, so that constraint state, masks and (next) speculative
verification stay in one small, visible step.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..constraints.base import DONE, Constraint, State, TokenAutomaton
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
    """`finished` is True only when the output is complete: EOS chosen ("eos"), the constraint
    admits nothing but the end ("complete"), or the budget ran out exactly on a complete output
    ("budget", reached by budget-aware decoding). A run cut short ("max_tokens") is never
    finished."""

    text: str
    tokens: list[int]
    finished: bool
    finish_reason: str  # "eos" | "complete" | "budget" | "max_tokens"
    stats: GenerationStats = field(default_factory=GenerationStats)
    value: Any = None  # constraint.parse(text) when finished (e.g. the parsed JSON), else None

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

    planned = automaton is not None and _check_budget(automaton, max_tokens)
    prompt_ids = encode_prompt(model.tokenizer, prompt)
    stats.prompt_tokens = len(prompt_ids)
    forward = _Forward(model.model, stats)
    logits = forward(prompt_ids)
    tokens: list[int] = []
    reason = "max_tokens"
    while True:
        t = time.perf_counter()
        final = automaton is not None and automaton.only_eos(state)  # computes the mask
        stats.mask_seconds += time.perf_counter() - t
        if final:
            reason = "complete"
            break
        if len(tokens) >= max_tokens:
            if automaton is not None and automaton.is_accepting(state):
                reason = "budget"
            break
        t = time.perf_counter()
        mask = automaton.mask(state) if automaton is not None else free_mask
        stats.mask_seconds += time.perf_counter() - t
        if not bool(mask.any()):
            raise GenerationError(f"the constraint allows no token after {len(tokens)} tokens")
        token = choose(logits, mask, params, generator)
        if planned:
            token, state = _within_budget(automaton, state, token, mask, logits, params,
                                          generator, max_tokens - len(tokens) - 1)
        elif automaton is not None and token not in vocab.eos_ids:
            state = automaton.advance(state, token)
        if token in vocab.eos_ids:
            reason = "eos"
            break
        tokens.append(token)
        if len(tokens) < max_tokens:
            logits = forward([token])

    stats.new_tokens = len(tokens)
    stats.seconds = time.perf_counter() - start_time
    text = vocab.decode(tokens).decode("utf-8", errors="replace")
    finished = reason != "max_tokens"
    value = None
    if finished:
        value = constraint.parse(text) if constraint is not None else text
    return GenerationResult(text, tokens, finished, reason, stats, value)


def _check_budget(automaton: TokenAutomaton, max_tokens: int) -> bool:
    """Whether a complete output within `max_tokens` can be guaranteed (plan-based decoding);
    raises when no output of the constraint fits at all."""
    need = automaton.tokens_to_complete(automaton.start)
    if need is not None and need <= max_tokens:
        return True
    shortest = automaton.completion_bytes(automaton.start)
    if shortest is not None:
        longest = max(len(b) for b in automaton.vocab.token_bytes)
        at_least = -(-len(shortest) // longest)
        if at_least > max_tokens:
            raise GenerationError(
                f"max_tokens={max_tokens} is too small: every output of this constraint needs at "
                f"least {at_least} tokens (shortest output {shortest[:80]!r}, {len(shortest)} bytes)"
            )
    return False


def _within_budget(
    automaton: TokenAutomaton,
    state: State,
    token: int,
    mask: torch.Tensor,
    logits: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None,
    left_after: int,
) -> tuple[int, State]:
    """Re-choose among the allowed tokens until one leaves a completion that fits in the
    `left_after` tokens still available. Sampling this way draws from the model's distribution
    restricted to the tokens that keep the output completable (rejections removed, renormalised);
    the token the previous step planned with always passes, so this ends."""
    while True:
        nxt = automaton.advance(state, token)
        need = automaton.tokens_to_complete(nxt)
        if need is not None and need <= left_after:
            return token, nxt
        mask = mask.clone() if mask is automaton.mask(state) else mask
        mask[token] = False
        if not bool(mask.any()):  # only if caches were dropped mid-plan: follow the plan itself
            token = automaton.plan_token(state)
            return token, automaton.advance(state, token)
        token = choose(logits, mask, params, generator)
