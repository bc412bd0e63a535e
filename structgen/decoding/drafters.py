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
from ..matcher import forced_tokenization
from .sampling import SamplingParams, masked_logits, masked_probs


class Scorer(Protocol):
    """A causal LM behind a KV cache: the only thing the loop and the draft model need.

    Kept this small so tests can substitute an exact tabular model for a transformer.
    """

    length: int  # tokens held in the cache

    def __call__(self, ids: Sequence[int], n: int, pad: int = 0) -> torch.Tensor:
        """Feed `ids` after the cached tokens, then `pad` filler positions (a wider pass may be
        cheaper); float32 logits of the last `n` positions of `ids`, (n, V)."""

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

    def kind(self, ctx: DraftContext) -> str | None:
        """The class of the proposal this drafter would make at `ctx`, for its running
        acceptance and draft length (`name`, or `name:detail` when some proposals are surer
        than others); None when it has nothing to propose."""
        return self.name

    @abstractmethod
    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        """Up to `k` tokens continuing `ctx.history`."""


class ForcedDrafter(Drafter):
    """The text the constraint forces next, drafted without a model call.

    A forced text can be tokenized several ways and the model need not pick its tokenizer's
    split: SmolLM2 often writes `":"` as `":` + `"` and `","` as `",` + `"` in compact JSON, so
    canonical drafts were rejected at most keys. Forced texts rarely repeat (each key is new),
    but their pieces do. So the drafter aligns the model's tokens over each forced text with the
    canonical ones at their common byte boundaries and learns, per canonical piece (a run of up
    to `MAX_PIECE` canonical tokens), the model's own tokens for it, or that the model runs past
    it into what follows (the draft then stops there). Drafts rewrite the canonical tokens with
    the latest learned pieces. A canonical tail that a longer token could merge with what follows
    (not safe in `forced_tokenization`) is drafted only as learned. Verification stays lossless
    whatever the guess.
    """

    name = "forced"
    MAX_PIECE = 4

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[State, tuple[list[int], int]] = {}  # canonical ids, how many are safe
        self._pieces: dict[tuple[int, ...], tuple[int, ...] | None] = {}  # None: runs past
        self._tokens: list[int] = []  # prompt + committed output
        self._pending: dict[int, list[int]] = {}  # history position → canonical ids proposed there
        self._token_bytes: Sequence[bytes] = ()

    def start(self, prompt_ids: Sequence[int]) -> None:
        self._tokens = list(prompt_ids)
        self._pending = {}
        self._pieces = {}

    def observe(self, token: int) -> None:
        self._tokens.append(token)
        for pos in [p for p in self._pending if p < len(self._tokens)]:
            canonical = self._pending[pos]
            text = b"".join(self._token_bytes[i] for i in canonical)
            emitted = self._tokens[pos:]
            covered = b"".join(self._token_bytes[i] for i in emitted)
            if text.startswith(covered) and len(covered) < len(text):
                continue  # not settled yet
            del self._pending[pos]
            if covered.startswith(text):  # covered exactly, or the last token crossed its end
                crossed = covered != text
                self._learn(canonical, emitted[:-1] if crossed else emitted, crossed)

    def _learn(self, canonical: list[int], emitted: list[int], crossed: bool) -> None:
        """Pieces between the byte boundaries both tokenizations share."""
        ends = self._ends(emitted)
        i = j = 0  # start of the current piece in canonical / emitted
        at = 0
        for k, token in enumerate(canonical):
            at += len(self._token_bytes[token])
            if at not in ends:
                continue
            piece = tuple(canonical[i:k + 1])
            if len(piece) <= self.MAX_PIECE:
                self._pieces[piece] = tuple(emitted[j:ends[at] + 1])
            i, j = k + 1, ends[at] + 1
        if crossed and 0 < len(canonical) - i <= self.MAX_PIECE:
            self._pieces[tuple(canonical[i:])] = None

    def _ends(self, tokens: list[int]) -> dict[int, int]:
        """Byte offset where each token ends → its index."""
        ends, at = {}, 0
        for k, token in enumerate(tokens):
            at += len(self._token_bytes[token])
            ends[at] = k
        return ends

    def _rewrite(self, canonical: list[int], safe: int) -> list[int]:
        out: list[int] = []
        i = 0
        while i < len(canonical):
            for n in range(min(self.MAX_PIECE, len(canonical) - i), 0, -1):
                piece = tuple(canonical[i:i + n])
                if piece in self._pieces:
                    split = self._pieces[piece]
                    if split is None:
                        return out
                    out.extend(split)
                    i += n
                    break
            else:
                if i >= safe:
                    return out
                out.append(canonical[i])
                i += 1
        return out

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        if ctx.automaton is None or ctx.state is DONE:
            return Proposal()
        entry = self._cache.get(ctx.state)
        if entry is None:
            entry = self._cache[ctx.state] = forced_tokenization(ctx.automaton, ctx.state,
                                                                 self.tokenizer)
        canonical, safe = entry
        if not canonical:
            return Proposal()
        self._token_bytes = ctx.automaton.vocab.token_bytes
        if len(ctx.history) >= len(self._tokens):  # a position the output may still reach
            self._pending[len(ctx.history)] = canonical
        return Proposal(self._rewrite(canonical, safe)[:k])


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

    def _match(self, history: list[int]) -> tuple[int, int]:
        """(length of the longest indexed suffix of `history`, where its continuation starts);
        (0, 0) when none."""
        for n in range(min(self.max_ngram, len(history)), self.min_ngram - 1, -1):
            at = self._index.get(tuple(history[len(history) - n:]))
            if at is not None:
                return n, at
        return 0, 0

    def kind(self, ctx: DraftContext) -> str | None:
        """Longer matches are surer: `lookup:1`, `lookup:2`, `lookup:3` (3 tokens or more)
        keep separate acceptance estimates, so a long match is drafted even while one-token
        matches keep failing."""
        n, _ = self._match(ctx.history)
        return f"{self.name}:{min(n, 3)}" if n else None

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        n, at = self._match(ctx.history)
        if not n:
            return Proposal()
        # a longer match earns a longer draft (SuffixDecoding's rule of thumb)
        return Proposal(self._tokens[at:at + min(k, 2 * n + 2)])


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

