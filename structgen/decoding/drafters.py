"""Drafters: cheap guesses of the next tokens, verified by the target model in one pass.

A drafter only proposes; the verifier (`speculative.py`) decides. Deterministic drafters
(grammar-forced text, prompt lookup) propose tokens with no distribution (a one-hot q); a draft
model proposes tokens *sampled* from a distribution q, which the verifier needs. Drafters chain:
the loop asks them in order, each continuing the draft the previous ones left, so a forced `{"`
can be followed by a value copied from the prompt.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

import torch

from ..constraints.base import DONE, State, TokenAutomaton
from ..matcher import forced_tokens
from .sampling import SamplingParams, masked_logits, masked_probs


class Scorer(Protocol):
    """A causal LM behind a KV cache: the only thing the loop and the draft model need.

    Kept this small so tests can substitute an exact tabular model for a transformer.
    """

    length: int  # tokens held in the cache

    def __call__(self, ids: Sequence[int], n: int) -> torch.Tensor:
        """Feed `ids` after the cached tokens; float32 logits of the last `n` positions, (n, V)."""

    def crop(self, length: int) -> None:
        """Forget cached tokens beyond the first `length`."""


@dataclass
class DraftContext:
    """Where a drafter continues from: the tokens so far (prompt, output, draft), the constraint
    state they reach (None when unconstrained) and the sampling settings."""

    history: list[int]
    automaton: TokenAutomaton | None
    state: State
    params: SamplingParams
    generator: torch.Generator | None
    free_mask: torch.Tensor
    eos_ids: frozenset[int]

    def mask(self, state: State) -> torch.Tensor:
        return self.automaton.mask(state) if self.automaton is not None else self.free_mask


@dataclass
class Proposal:
    """Draft tokens with, for sampled drafts, the distribution each was drawn from (`qs`).

    `rejected` holds a sampled token the constraint refused, with its q: that position is not
    fed to the model but must still be verified as a certain rejection (residual sampling),
    otherwise cutting the draft would bias the output.
    """

    tokens: list[int] = field(default_factory=list)
    qs: list[torch.Tensor] | None = None
    rejected: tuple[int, torch.Tensor] | None = None


class Drafter(ABC):
    """A source of draft tokens. `start` is called once per generation with the prompt,
    `observe` with every token the output commits to."""

    name: str = "drafter"

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Reset per-generation state."""

    def observe(self, token: int) -> None:
        """The output committed to `token`."""

    @abstractmethod
    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        """Up to `k` tokens continuing `ctx.history`."""


class ForcedDrafter(Drafter):
    """The text the constraint forces next, drafted without a model call.

    A forced text can be tokenized several ways and the model need not pick its tokenizer's
    split: SmolLM2 often writes `":"` as `":` + `"` in compact JSON, and a canonical draft is
    then rejected at every key. The drafter therefore remembers, per forced text, the tokens
    the model last emitted inside it and proposes those next time (nothing, when its first
    token ran past the text); a text never seen gets the canonical tokenization
    (`forced_tokens`). Verification stays lossless either way: only the guess changes.
    """

    name = "forced"

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[State, tuple[bytes, list[int]]] = {}
        self._habits: dict[bytes, list[int]] = {}  # forced text → the model's own split
        self._tokens: list[int] = []  # prompt + committed output
        self._pending: dict[int, bytes] = {}  # history position → forced text proposed there
        self._token_bytes: Sequence[bytes] = ()

    def start(self, prompt_ids: Sequence[int]) -> None:
        self._tokens = list(prompt_ids)
        self._pending = {}
        self._habits = {}

    def observe(self, token: int) -> None:
        self._tokens.append(token)
        for pos in [p for p in self._pending if p < len(self._tokens)]:
            text = self._pending[pos]
            emitted = self._tokens[pos:]
            covered = b"".join(self._token_bytes[i] for i in emitted)
            if text.startswith(covered) and len(covered) < len(text):
                continue  # not settled yet
            del self._pending[pos]
            if covered.startswith(text):  # covered exactly, or the last token crossed its end
                inside = emitted if covered == text else emitted[:-1]
                self._habits[text] = inside  # possibly empty: the model never splits there

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        if ctx.automaton is None or ctx.state is DONE:
            return Proposal()
        entry = self._cache.get(ctx.state)
        if entry is None:
            entry = self._cache[ctx.state] = (
                ctx.automaton.forced_bytes(ctx.state),
                forced_tokens(ctx.automaton, ctx.state, self.tokenizer))
        text, ids = entry
        if not ids:
            return Proposal()
        self._token_bytes = ctx.automaton.vocab.token_bytes
        if len(ctx.history) >= len(self._tokens):  # a position the output may still reach
            self._pending[len(ctx.history)] = text
        return Proposal(self._habits.get(text, ids)[:k])


class LookupDrafter(Drafter):
    """Prompt lookup over the prompt and everything generated: find the latest earlier
    occurrence of the longest suffix (up to `max_ngram` tokens) and propose what followed it.

    The index maps each n-gram to the position right after its latest occurrence and is updated
    per committed token (O(max_ngram) per token), never rescanned.
    """

    name = "lookup"

    def __init__(self, max_ngram: int = 4, min_ngram: int = 1) -> None:
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self._tokens: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}

    def start(self, prompt_ids: Sequence[int]) -> None:
        self._tokens = []
        self._index = {}
        for token in prompt_ids:
            self.observe(token)

    def observe(self, token: int) -> None:
        tokens = self._tokens
        end = len(tokens)  # `token` continues every n-gram ending at end - 1
        for n in range(self.min_ngram, min(self.max_ngram, end) + 1):
            self._index[tuple(tokens[end - n:end])] = end
        tokens.append(token)

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        history = ctx.history
        for n in range(min(self.max_ngram, len(history)), self.min_ngram - 1, -1):
            at = self._index.get(tuple(history[len(history) - n:]))
            if at is not None:
                # a longer match earns a longer draft (SuffixDecoding's rule of thumb)
                return Proposal(self._tokens[at:at + min(k, 2 * n + 2)])
        return Proposal()


class ModelDrafter(Drafter):
    """A small causal LM sharing the target's tokenizer. Its proposals follow the same sampling
    settings as the target; with `masked` (the default) the constraint's mask is applied along
    the draft, which raises acceptance. `masked=False` drafts from the raw model (still lossless:
    refused tokens become certain rejections)."""

    name = "model"

    def __init__(self, scorer: Scorer, masked: bool = True) -> None:
        self.scorer = scorer
        self.masked = masked
        self._cached: list[int] = []  # the tokens the scorer's cache holds

    def start(self, prompt_ids: Sequence[int]) -> None:
        """Prefill the prompt here, so the per-token draft cost the loop measures is not
        swamped by it."""
        self.scorer.crop(0)
        self._cached = list(prompt_ids[:-1])
        if self._cached:
            self.scorer(self._cached, 1)

    def _logits_after(self, history: list[int]) -> torch.Tensor:
        """Next-token logits after `history`, reusing the longest cached prefix."""
        common = 0
        limit = min(len(self._cached), len(history) - 1)  # feed at least one token
        while common < limit and self._cached[common] == history[common]:
            common += 1
        self.scorer.crop(common)
        logits = self.scorer(history[common:], 1)[0]
        self._cached = list(history)
        return logits

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        if k <= 0:
            return Proposal()
        automaton, state = ctx.automaton, ctx.state
        history = list(ctx.history)
        out = Proposal(qs=None if ctx.params.greedy else [])
        logits = self._logits_after(history)
        for _ in range(k):
            if automaton is not None and automaton.only_eos(state):
                break
            mask = ctx.mask(state) if self.masked else ctx.free_mask
            if not bool(mask.any()):
                break
            q = None
            if ctx.params.greedy:
                token = int(torch.argmax(masked_logits(logits, mask)))
            else:
                q = masked_probs(logits, mask, ctx.params)
                token = int(torch.multinomial(q, 1, generator=ctx.generator))
            nxt = automaton.advance(state, token) if automaton is not None else None
            if automaton is not None and nxt is None:
                if q is not None:
                    out.rejected = (token, q)
                break
            out.tokens.append(token)
            if q is not None:
                out.qs.append(q)
            if token in ctx.eos_ids or len(out.tokens) == k:
                break  # a drafted EOS ends the draft; nothing to score after the last token
            state = nxt
            history.append(token)
            logits = self.scorer([token], 1)[0]
            self._cached.append(token)
        return out

