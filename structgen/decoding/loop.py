"""The decode loop: one forward pass per token over a KV cache, masks from the constraint.

Our own loop rather than `model.generate`, so that constraint state, masks and (next) speculative
verification stay in one small, visible step.
"""
from __future__ import annotations

import functools
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import torch

from ..constraints.base import Constraint, State, TokenAutomaton
from ..errors import GenerationError
from .drafters import (DraftContext, Drafter, ForcedDrafter, LookupDrafter, ModelDrafter,
                       Scorer)
from .kvcache import grouped_query_attention, new_cache
from .sampling import SamplingParams, choose, masked_logits
from .scoring import LogitRows, OutputHead
from .speculative import DraftLength, PassCost, verify_token

Message = dict[str, str]


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0
    mask_seconds: float = 0.0
    forward_passes: int = 0
    draft_seconds: float = 0.0
    drafted: dict[str, int] = field(default_factory=dict)  # draft tokens per drafter
    accepted: dict[str, int] = field(default_factory=dict)  # of which the verifier accepted
    forced_tokens: int = 0  # emitted tokens that came from the grammar-forced drafter

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**{k: (dict(v) if isinstance(v, dict) else v) for k, v in self.__dict__.items()},
                "tokens_per_s": self.tokens_per_s}


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
    """Incremental forward passes over a growing KV cache (the `Scorer` of a transformers
    causal LM); `crop` rolls the cache back after rejected drafts."""

    def __init__(self, model: Any, stats: GenerationStats | None = None) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.stats = stats
        self.length = 0
        self.cache = self._fresh()
        self.head = OutputHead.of(model)  # None: full logits from the model's own forward

    def _fresh(self) -> Any:
        return new_cache(self.model)

    @torch.inference_mode()
    def __call__(self, ids: Sequence[int], n: int = 1, pad: int = 0) -> torch.Tensor | LogitRows:
        """Logits of the last `n` positions after feeding `ids`, (n, V): float32 on CPU, or
        `LogitRows` computing them per position and mask when the model's head allows it.
        `pad` filler positions (copies of the last id) follow `ids` when a wider pass is
        cheaper (`PassCost`); their logits are not computed and `crop` removes them."""
        t = time.perf_counter()
        fed = list(ids) + list(ids[-1:]) * pad
        x = torch.tensor([fed], device=self.device)
        end = len(fed) - pad
        with grouped_query_attention(self.model):
            if self.head is not None:
                out = self.model.get_decoder()(input_ids=x, past_key_values=self.cache,
                                               use_cache=True)
                logits: torch.Tensor | LogitRows = LogitRows(
                    out.last_hidden_state[0, end - n:end], self.head)
            else:
                out = self.model(input_ids=x, past_key_values=self.cache, use_cache=True,
                                 logits_to_keep=n + pad)
                logits = out.logits[0, :n].float().cpu()
        self.cache = out.past_key_values
        self.length += len(fed)
        if self.stats is not None:
            self.stats.forward_seconds += time.perf_counter() - t
            self.stats.forward_passes += 1
        return logits

    def crop(self, length: int) -> None:
        """Keep the first `length` cached tokens. Called after every pass, even when nothing
        is removed: sliding-window layers record past states until a crop trims them."""
        if length > self.length:
            return
        if length == 0:
            self.cache = self._fresh()
        else:
            self.cache.crop(length - self.length)  # a negative count removes that many
        self.length = length


_PASS_COSTS: "weakref.WeakKeyDictionary[Any, PassCost]" = weakref.WeakKeyDictionary()


def pass_costs(model: Any) -> PassCost:
    """The forward-pass cost table of `model` (a torch module), shared by its generate calls:
    pass costs belong to the model and the machine, so later calls start measured. Timed on
    the CPU by the calling thread's CPU clock, which a busy machine does not stretch at random
    as it does wall time (process time would add other threads' spinning); wall time on an
    accelerator, whose work no CPU clock sees."""
    costs = _PASS_COSTS.get(model)
    if costs is None:
        on_cpu = next(model.parameters()).device.type == "cpu"
        costs = _PASS_COSTS[model] = PassCost(clock=time.thread_time if on_cpu else time.perf_counter)
    return costs


DrafterSpec = Union[str, Drafter]
DEFAULT_DRAFTERS = ("forced", "lookup")


def generate(
    model: Any,
    prompt: str | Sequence[Message] | Sequence[str | Sequence[Message]],
    constraint: Constraint | Sequence[Constraint | None] | None = None,
    *,
    max_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    speculative: bool | None = None,
    draft_model: Any = None,
    drafters: Sequence[DrafterSpec] | None = None,
) -> GenerationResult | list[GenerationResult]:
    """Generate from a `LoadedModel` (see `structgen.load_model`), optionally constrained.

    Speculative decoding (draft, then verify in one forward pass) is on unless `speculative` is
    False: `drafters` names the drafters in the order they extend a draft ("forced", "lookup",
    "model" or `Drafter` instances; default forced + lookup, plus "model" when `draft_model` is
    given). Output law is unchanged (greedy: token-identical), so it is on by default.

    A list of prompts (strings or message lists) is decoded as one batch (`batch.py`) and gives
    a list of results in order; `constraint` is then one constraint for every row or a list
    with one per row. Row i decodes as prompt i alone would with `seed + i` (its own generator):
    greedy, token-identical; sampling, the same law.
    """
    if isinstance(model, str):
        from ..models import load_model

        model = load_model(model)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    params = SamplingParams(temperature, top_p, top_k)
    if not isinstance(prompt, str):
        prompt = list(prompt)  # once: an iterator would be spent by the checks below
    if _is_batch(prompt):
        from .batch import generate_batch

        prompts = prompt
        if constraint is None or isinstance(constraint, Constraint):
            constraints = [constraint] * len(prompts)
        else:
            constraints = list(constraint)
            if len(constraints) != len(prompts):
                raise ValueError(f"{len(constraints)} constraints for {len(prompts)} prompts")
        return generate_batch(model, prompts, constraints, max_tokens=max_tokens, params=params,
                              seed=seed, speculative=speculative, draft_model=draft_model,
                              drafters=drafters)
    if constraint is not None and not isinstance(constraint, Constraint):
        raise TypeError("a list of constraints needs a list of prompts (one constraint per prompt)")
    start_time = time.perf_counter()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    setup = _Setup(model, constraint, max_tokens)
    active = _make_drafters(model, speculative, draft_model, drafters)
    prompt_ids = encode_prompt(model.tokenizer, prompt)
    stats = GenerationStats(prompt_tokens=len(prompt_ids))
    forward = _Forward(model.model, stats)
    tokens, reason = decode(forward, setup.automaton, prompt_ids, model.vocab.eos_ids,
                            setup.free_mask, params, generator, max_tokens, setup.planned, active,
                            stats, pass_costs(model.model))
    return _result(model.vocab, constraint, tokens, reason, stats, start_time)


def _is_batch(prompt: str | list[Any]) -> bool:
    """A list of prompts, as opposed to one prompt (a string or a list of message dicts)."""
    if isinstance(prompt, str):
        return False
    if not prompt:
        raise ValueError("empty prompt: give a string, a list of messages or a list of prompts")
    if all(isinstance(m, dict) for m in prompt):
        return False
    if any(isinstance(m, dict) for m in prompt):
        raise TypeError("a prompt list mixes message dicts with other items: give one list of "
                        "messages, or a list of prompts (strings or lists of messages)")
    return True


class _Setup:
    """What one constraint needs before decoding: its token automaton, whether the budget can
    be planned (`_check_budget`), and the mask of every real token for unconstrained rows."""

    def __init__(self, model: Any, constraint: Constraint | None, max_tokens: int) -> None:
        vocab = model.vocab
        self.automaton = constraint.compile(vocab) if constraint is not None else None
        self.free_mask = torch.zeros(vocab.width, dtype=torch.bool)
        self.free_mask[: len(model.tokenizer)] = True
        self.planned = self.automaton is not None and _check_budget(self.automaton, max_tokens)


def _result(vocab: Any, constraint: Constraint | None, tokens: list[int], reason: str,
            stats: GenerationStats, start_time: float) -> GenerationResult:
    """The result of one finished row: text, finish state, parsed value, timing."""
    stats.new_tokens = len(tokens)
    stats.seconds = time.perf_counter() - start_time
    text = vocab.decode(tokens).decode("utf-8", errors="replace")
    finished = reason != "max_tokens"
    value = None
    if finished:
        value = constraint.parse(text) if constraint is not None else text
    return GenerationResult(text, tokens, finished, reason, stats, value)


def _make_drafters(model: Any, speculative: bool | None, draft_model: Any,
                   drafters: Sequence[DrafterSpec] | None) -> list[Drafter]:
    """Drafter instances for one generation (none when speculation is off)."""
    if speculative is False:
        if drafters or draft_model is not None:
            raise ValueError("speculative=False contradicts drafters/draft_model")
        return []
    specs = list(drafters) if drafters is not None else [
        *DEFAULT_DRAFTERS, *(("model",) if draft_model is not None else ())]
    out: list[Drafter] = []
    for spec in specs:
        if isinstance(spec, Drafter):
            out.append(spec)
        elif spec == "forced":
            out.append(ForcedDrafter(model.tokenizer))
        elif spec == "lookup":
            out.append(LookupDrafter())
        elif spec == "model":
            if draft_model is None:
                raise ValueError('drafter "model" needs draft_model=')
            from ..models import LoadedModel

            net = draft_model.model if isinstance(draft_model, LoadedModel) else draft_model
            out.append(ModelDrafter(_Forward(net)))
        else:
            raise ValueError(f"unknown drafter {spec!r}: use 'forced', 'lookup', 'model' or a Drafter")
    return out


class _Row:
    """One output under construction: its constraint state, emitted tokens, drafters, draft
    lengths and the tokens not yet in the model's cache (`feed`). The single-prompt loop
    (`decode`) and the batched loop (`batch.py`) drive it the same way: `stop`, `draft`, one
    forward pass over `feed + draft`, then `verify` with that pass's logits."""

    def __init__(self, automaton: TokenAutomaton | None, prompt_ids: Sequence[int],
                 eos_ids: frozenset[int], free_mask: torch.Tensor, params: SamplingParams,
                 generator: torch.Generator | None, max_tokens: int, planned: bool,
                 drafters: Sequence[Drafter], stats: GenerationStats,
                 costs: PassCost | None = None) -> None:
        self.automaton = automaton
        self.eos_ids = eos_ids
        self.free_mask = free_mask
        self.params = params
        self.generator = generator
        self.max_tokens = max_tokens
        self.planned = planned
        self.drafters = drafters
        self.stats = stats
        self.state = automaton.start if automaton is not None else None
        self.tokens: list[int] = []
        self.history = list(prompt_ids)  # prompt + output, for drafters
        self.feed = list(prompt_ids)  # tokens not yet in the cache
        self.lengths = DraftLength(costs=costs if costs is not None else PassCost())
        self.reason: str | None = None  # set when the output has ended
        self._draft: tuple[list[int], list[torch.Tensor] | None, list[str],
                           tuple[int, torch.Tensor] | None] = ([], None, [], None)
        for drafter in drafters:
            drafter.start(prompt_ids)

    def stop(self) -> str | None:
        """The finish reason if the output must end before the next token, else None."""
        t = time.perf_counter()
        final = self.automaton is not None and self.automaton.only_eos(self.state)  # computes the mask
        self.stats.mask_seconds += time.perf_counter() - t
        if final:
            return "complete"
        if len(self.tokens) >= self.max_tokens:
            accepting = self.automaton is not None and self.automaton.is_accepting(self.state)
            return "budget" if accepting else "max_tokens"
        return None

    def draft(self) -> list[int]:
        """The draft to verify after `feed` in the next pass (kept for `verify`)."""
        room = self.max_tokens - len(self.tokens) - 1  # the last position is verified without a draft
        self._draft = _draft(self.drafters, self.lengths, self.history, self.automaton, self.state,
                             self.params, self.generator, self.free_mask, self.eos_ids, room,
                             self.stats)
        return self._draft[0]

    def verify(self, rows: torch.Tensor | LogitRows) -> int:
        """Emit tokens from the logits of the pass over `feed + draft` (`rows`: its last
        len(draft) + 1 positions); returns how many draft tokens were accepted.

        Each position is verified (`verify_token`) under the mask of the constraint state the
        draft reaches there; the first token that differs from the draft ends the pass and
        becomes the next `feed`. Only emitted tokens advance `state`. Sets `reason` when the
        output ended here.
        """
        draft, qs, sources, rejected = self._draft
        automaton, stats = self.automaton, self.stats
        self.feed = []
        accepted = 0
        for i in range(len(draft) + 1):
            if i > 0:
                self.reason = self.stop()
                if self.reason is not None:
                    break
            t = time.perf_counter()
            mask = automaton.mask(self.state) if automaton is not None else self.free_mask
            stats.mask_seconds += time.perf_counter() - t
            if not bool(mask.any()):
                raise GenerationError(f"the constraint allows no token after {len(self.tokens)} tokens")
            if i < len(draft):
                guess, q = draft[i], (qs[i] if qs is not None else None)
            else:
                guess, q = rejected if rejected is not None else (None, None)
            logits: torch.Tensor | Callable[[], torch.Tensor]
            if isinstance(rows, LogitRows) and self.params.greedy:
                token = rows.argmax(i, mask)  # the masked argmax without the full row
                logits = functools.partial(rows.masked, i, mask)  # if the budget re-chooses
            else:
                logits = rows.masked(i, mask) if isinstance(rows, LogitRows) else rows[i]
                token = verify_token(logits, mask, self.params, self.generator, guess, q)
            if self.planned:
                token, state_after = _within_budget(automaton, self.state, token, mask, logits,
                                                    self.params, self.generator,
                                                    self.max_tokens - len(self.tokens) - 1)
            elif automaton is not None and token not in self.eos_ids:
                state_after = automaton.advance(self.state, token)
            else:
                state_after = self.state
            hit = i < len(draft) and token == draft[i]
            accepted += hit
            if token in self.eos_ids:
                self.reason = "eos"
                break
            self.state = state_after
            self.tokens.append(token)
            self.history.append(token)
            for drafter in self.drafters:
                drafter.observe(token)
            if not hit:
                self.feed = [token]
                break
        _score_drafters(self.lengths, sources, accepted, stats)
        return accepted


def decode(
    scorer: Scorer,
    automaton: TokenAutomaton | None,
    prompt_ids: Sequence[int],
    eos_ids: frozenset[int],
    free_mask: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None,
    max_tokens: int,
    planned: bool,
    drafters: Sequence[Drafter],
    stats: GenerationStats,
    costs: PassCost | None = None,
) -> tuple[list[int], str]:
    """The decode loop of one prompt: (generated tokens without EOS, finish reason).

    Each pass feeds the last emitted token plus a draft, padded to a cheaper width when
    `costs` (the scorer's pass-cost table) says so; after verification the cache is cropped
    to the accepted tokens. Without drafters this is plain one-token-per-pass decoding.
    """
    row = _Row(automaton, prompt_ids, eos_ids, free_mask, params, generator, max_tokens, planned,
               drafters, stats, costs)
    table = row.lengths.costs
    while True:
        reason = row.stop()
        if reason is not None:
            return row.tokens, reason
        draft = row.draft()
        n = len(draft) + 1
        verifying = len(row.feed) == 1  # the prompt pass says nothing about verify passes
        width = table.width(n) if verifying and drafters else n
        t = table.clock()
        logits = scorer(row.feed + draft, n, width - n)
        if verifying:
            table.observe(width, table.clock() - t)
        kept = scorer.length - len(draft) - (width - n)  # cache length without draft and padding
        accepted = row.verify(logits)
        if row.reason is not None:
            return row.tokens, row.reason
        scorer.crop(kept + accepted)


def _draft(
    drafters: Sequence[Drafter],
    lengths: DraftLength,
    history: list[int],
    automaton: TokenAutomaton | None,
    state: State,
    params: SamplingParams,
    generator: torch.Generator | None,
    free_mask: torch.Tensor,
    eos_ids: frozenset[int],
    room: int,
    stats: GenerationStats,
) -> tuple[list[int], list[torch.Tensor] | None, list[str], tuple[int, torch.Tensor] | None]:
    """Chain the drafters into one draft of at most `room` tokens, cut at the first token the
    constraint refuses: (tokens, their q's or None when all are one-hot, source per token,
    a refused sampled token to verify as a certain rejection). `sources` holds each token's
    proposal kind (`Drafter.kind`)."""
    tokens: list[int] = []
    qs: list[torch.Tensor | None] = []
    sources: list[str] = []
    rejected: tuple[int, torch.Tensor] | None = None
    ctx = DraftContext(list(history), automaton, state, params, generator, free_mask, eos_ids)
    budgets: dict[str, int] = {}  # draft length per proposal kind, chosen once per draft
    ended = False  # a refused sampled token or a drafted EOS: nothing may follow
    progress = True
    while progress and not ended and len(tokens) < room:
        progress = False
        for drafter in drafters:
            kind = drafter.kind(ctx)
            if kind is None:
                continue
            if kind not in budgets:
                budgets[kind] = lengths.k_for(kind)
            k = min(budgets[kind], room - len(tokens))
            if k <= 0:
                continue
            t = time.perf_counter()
            proposal = drafter.propose(ctx, k)
            seconds = time.perf_counter() - t
            stats.draft_seconds += seconds
            lengths.observe_cost(kind, seconds, len(proposal.tokens))
            taken = 0
            for j, token in enumerate(proposal.tokens[:k]):
                nxt = automaton.advance(ctx.state, token) if automaton is not None else None
                if automaton is not None and nxt is None:
                    if proposal.qs is not None:  # cutting a sampled draft = certain rejection
                        rejected, ended = (token, proposal.qs[j]), True
                    break
                tokens.append(token)
                qs.append(proposal.qs[j] if proposal.qs is not None else None)
                sources.append(kind)
                ctx.history.append(token)
                ctx.state = nxt
                taken += 1
                if token in eos_ids:
                    ended = True
                    break
            if not ended and proposal.rejected is not None and taken == len(proposal.tokens):
                rejected, ended = proposal.rejected, True
            budgets[kind] -= taken
            if taken or ended:
                progress = taken > 0
                break  # start again from the first drafter (e.g. forced text after a copied value)
    any_q = rejected is not None or any(q is not None for q in qs)
    return tokens, (qs if any_q else None), sources, rejected


def _score_drafters(lengths: DraftLength, sources: list[str], accepted: int,
                    stats: GenerationStats) -> None:
    """Drafted/accepted counts per proposal kind (the draft-length model) and per drafter
    (stats: the kind's name before any `:`)."""
    per: dict[str, list[int]] = {}
    for i, kind in enumerate(sources):
        counts = per.setdefault(kind, [0, 0])
        counts[0] += 1
        counts[1] += i < accepted
    for kind, (drafted, ok) in per.items():
        name = kind.split(":", 1)[0]
        stats.drafted[name] = stats.drafted.get(name, 0) + drafted
        stats.accepted[name] = stats.accepted.get(name, 0) + ok
        lengths.observe_draft(kind, ok, drafted)
    stats.forced_tokens += per.get("forced", [0, 0])[1]


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
    logits: torch.Tensor | Callable[[], torch.Tensor],
    params: SamplingParams,
    generator: torch.Generator | None,
    left_after: int,
) -> tuple[int, State]:
    """Re-choose among the allowed tokens until one leaves a completion that fits in the
    `left_after` tokens still available. Sampling this way draws from the model's distribution
    restricted to the tokens that keep the output completable (rejections removed, renormalised);
    the token the previous step planned with always passes, so this ends.

    Greedy re-choices walk the allowed tokens once in descending logit order (the order
    repeated argmaxes would visit them in, ties by id): near the end of a tight budget
    thousands of tokens can be refused, and an argmax over the vocabulary per refusal was most
    of such a step. `logits` may be a function giving them: only re-choices need them."""
    order: list[int] | None = None
    while True:
        nxt = automaton.advance(state, token)
        need = automaton.tokens_to_complete(nxt)
        if need is not None and need <= left_after:
            return token, nxt
        if callable(logits):
            logits = logits()
        if params.greedy:
            if order is None:
                ids = torch.nonzero(mask).squeeze(1)
                ranked = torch.sort(masked_logits(logits, mask)[ids], descending=True, stable=True)
                order = ids[ranked.indices].tolist()[::-1]  # a stack: best last
            while order and order[-1] == token:
                order.pop()
            if order:
                token = order.pop()
                continue
        else:
            mask = mask.clone() if mask is automaton.mask(state) else mask
            mask[token] = False
            if bool(mask.any()):
                token = choose(logits, mask, params, generator)
                continue
        token = automaton.plan_token(state)  # only if caches were dropped mid-plan
        return token, automaton.advance(state, token)
