"""Batched generation: one forward pass per step for every unfinished row.

Each row is a `loop._Row` (its own constraint state, drafters, draft lengths, budget and
sampling generator), so a row decodes exactly as it would alone; only the forward pass is
shared. Rows draft different numbers of tokens and accept different numbers, so the rows' real
lengths drift apart. Rather than cropping the shared cache to the shortest row and feeding the
others' accepted tokens again (whose backlog grows without bound whenever one row keeps
accepting more than another), every cache slot keeps the position it was fed at and a validity
bit: padding and rejected drafts stay in the cache as invalid slots (gaps), and each query
attends exactly to the valid slots of its row at positions up to its own (and, for
sliding-window layers, within the window *in positions*). Position ids continue per row from the
row's real length. Trailing slots no row uses are cropped after every step, and the cache is
repacked (valid slots only, right-aligned) when gaps make up most of it.

The attention masks are built here as 4-D masks (one per layer type), not left to transformers'
2-D padding mask: transformers measures causality and sliding windows in cache slots, which is
exact for full attention with gaps but not for sliding-window layers (Gemma 3), whose window
would shrink by the gaps and whose sliding cache layers drop slots by count.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from ..constraints.base import Constraint
from ..errors import GenerationError
from .drafters import Drafter
from .kvcache import grouped_query_attention
from .loop import (DrafterSpec, GenerationResult, GenerationStats, Message, _make_drafters,
                   _result, _Row, _Setup, encode_prompt)
from .sampling import SamplingParams
from .scoring import LogitRows, OutputHead

SUPPORTED_LAYERS = {"full_attention", "sliding_attention"}


class _BatchForward:
    """Forward passes of several rows over one KV cache with per-slot positions and validity."""

    #: Repack the cache when fewer than this fraction of its slots are valid in the fullest row.
    repack_below = 0.5

    def __init__(self, model: Any, rows: int) -> None:
        from transformers import DynamicCache

        self.model = model
        config = model.config
        self.device = next(model.parameters()).device
        window = getattr(config, "sliding_window", None)
        # no layer_types: every layer is alike, sliding when the config has a window (Mistral)
        types = set(getattr(config, "layer_types", None)
                    or ["sliding_attention" if window else "full_attention"])
        if not types <= SUPPORTED_LAYERS:
            raise GenerationError(f"batched generation supports full and sliding-window attention "
                                  f"layers only, not {sorted(types - SUPPORTED_LAYERS)}")
        if config._attn_implementation not in ("sdpa", "eager"):
            raise GenerationError("batched generation needs attn_implementation 'sdpa' or 'eager' "
                                  f"(arbitrary 4-D masks), not {config._attn_implementation!r}")
        self.windows = {t: (window if t == "sliding_attention" else None) for t in sorted(types)}
        self.sdpa = config._attn_implementation == "sdpa"
        self.cache = DynamicCache()  # full layers only: sliding layers would evict slots by count
        self.pos = torch.zeros((rows, 0), dtype=torch.long)  # position of each cache slot
        self.valid = torch.zeros((rows, 0), dtype=torch.bool)  # whether a slot belongs to its row
        self.head = OutputHead.of(model)

    @property
    def slots(self) -> int:
        return self.valid.shape[1]

    @torch.inference_mode()
    def __call__(self, inputs: Sequence[Sequence[int]], starts: Sequence[int],
                 keep: Sequence[int]) -> list[torch.Tensor | LogitRows]:
        """Feed `inputs[b]` to row b at positions from `starts[b]`; float32 logits (on CPU) of
        each row's last `keep[b]` inputs, shape (keep[b], V). Inputs are left-padded to the
        longest, so every row's real tokens end the step."""
        rows, width = len(inputs), max(len(x) for x in inputs)
        ids = torch.zeros((rows, width), dtype=torch.long)
        qpos = torch.zeros((rows, width), dtype=torch.long)
        qvalid = torch.zeros((rows, width), dtype=torch.bool)
        for b, (x, start) in enumerate(zip(inputs, starts)):
            n = len(x)
            ids[b, width - n:] = torch.tensor(list(x), dtype=torch.long)
            qpos[b, width - n:] = torch.arange(start, start + n)
            qpos[b, :width - n] = start  # pads: in range, never attended
            qvalid[b, width - n:] = True
        self.pos = torch.cat([self.pos, qpos], dim=1)
        self.valid = torch.cat([self.valid, qvalid], dim=1)
        args = dict(input_ids=ids.to(self.device), position_ids=qpos.to(self.device),
                    attention_mask=self._masks(qpos, qvalid), past_key_values=self.cache,
                    use_cache=True)
        if self.head is not None:  # logits per position and mask, as in the single-row loop
            with grouped_query_attention(self.model):
                out = self.model.get_decoder()(**args)
            self.cache = out.past_key_values
            hidden = out.last_hidden_state
            return [LogitRows(hidden[b, width - k:], self.head) for b, k in enumerate(keep)]
        with grouped_query_attention(self.model):
            out = self.model(**args, logits_to_keep=max(keep))
        self.cache = out.past_key_values
        logits = out.logits.float().cpu()
        return [logits[b, logits.shape[1] - k:] for b, k in enumerate(keep)]

    def _masks(self, qpos: torch.Tensor, qvalid: torch.Tensor) -> Any:
        """(rows, 1, queries, slots) masks: a query sees the valid slots of its row at
        positions up to its own (within the window for sliding layers); a pad also sees itself,
        so no query is masked entirely (an all-masked query gives NaN in some kernels)."""
        seen = self.valid[:, None, :] & (self.pos[:, None, :] <= qpos[:, :, None])
        width = qpos.shape[1]
        own = torch.zeros((width, self.slots), dtype=torch.bool)
        own[:, self.slots - width:] = torch.eye(width, dtype=torch.bool)
        pads = ~qvalid[:, :, None] & own[None]
        masks = {}
        for kind, window in self.windows.items():
            m = seen if window is None else seen & (self.pos[:, None, :] > qpos[:, :, None] - window)
            m = (m | pads)[:, None]
            if not self.sdpa:  # eager attention adds the mask to the scores
                m = torch.zeros(m.shape, dtype=self.model.dtype).masked_fill(
                    ~m, torch.finfo(self.model.dtype).min)
            masks[kind] = m.to(self.device)
        return next(iter(masks.values())) if len(masks) == 1 else masks

    @torch.inference_mode()
    def reject(self, row: int, count: int) -> None:
        """The last `count` slots of `row` (rejected draft tokens) leave the row."""
        if count > 0:
            self.valid[row, self.slots - count:] = False

    @torch.inference_mode()
    def select(self, rows: Sequence[int]) -> None:
        """Keep only these rows (finished rows leave the batch)."""
        index = torch.tensor(list(rows), dtype=torch.long)
        self.cache.batch_select_indices(index.to(self.device))
        self.pos, self.valid = self.pos[index], self.valid[index]

    @torch.inference_mode()
    def tidy(self) -> None:
        """Crop trailing slots no row uses; repack when gaps make up most of the cache."""
        used = self.valid.any(dim=0).nonzero()
        end = int(used[-1]) + 1 if len(used) else 0
        if end < self.slots:
            self.cache.crop(end - self.slots)
            self.pos, self.valid = self.pos[:, :end], self.valid[:, :end]
        counts = self.valid.sum(dim=1)
        longest = int(counts.max()) if len(counts) else 0
        if self.slots > 16 and longest < self.repack_below * self.slots:
            self._repack(counts, longest)

    def _repack(self, counts: torch.Tensor, longest: int) -> None:
        """Gather each row's valid slots, in order, right-aligned into `longest` slots."""
        rows = self.valid.shape[0]
        order = torch.argsort(self.valid.to(torch.int8), dim=1, stable=True)  # invalid first
        index = order[:, self.slots - longest:]
        keep = torch.arange(longest)[None, :] >= (longest - counts)[:, None]
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            heads, dim = layer.keys.shape[1], layer.keys.shape[3]
            at = index.to(layer.keys.device)[:, None, :, None].expand(rows, heads, longest, dim)
            layer.keys = layer.keys.gather(2, at)
            layer.values = layer.values.gather(2, at)
        self.pos = self.pos.gather(1, index)
        self.valid = keep


def generate_batch(
    model: Any,
    prompts: Sequence[str | Sequence[Message]],
    constraints: Sequence[Constraint | None],
    *,
    max_tokens: int,
    params: SamplingParams,
    seed: int | None,
    speculative: bool | None,
    draft_model: Any,
    drafters: Sequence[DrafterSpec] | None,
) -> list[GenerationResult]:
    """Decode every prompt in one batch (see `generate`): one result per row, in order.

    Row i samples from its own generator seeded with `seed + i` (none when `seed` is None), so
    it gives exactly what `generate(model, prompts[i], constraints[i], seed=seed + i)` gives.
    """
    if drafters is not None and any(isinstance(d, Drafter) for d in drafters):
        raise ValueError("batched generation takes drafter names ('forced', 'lookup', 'model'): "
                         "a Drafter instance holds the state of one generation")
    start_time = time.perf_counter()
    setups: dict[int, _Setup] = {}  # one compiled automaton per distinct constraint
    rows: list[_Row] = []
    for i, (prompt, constraint) in enumerate(zip(prompts, constraints)):
        setup = setups.get(id(constraint))
        if setup is None:
            setup = setups[id(constraint)] = _Setup(model, constraint, max_tokens)
        generator = torch.Generator().manual_seed(seed + i) if seed is not None else None
        active = _make_drafters(model, speculative, draft_model, drafters)
        prompt_ids = encode_prompt(model.tokenizer, prompt)
        rows.append(_Row(setup.automaton, prompt_ids, model.vocab.eos_ids, setup.free_mask,
                         params, generator, max_tokens, setup.planned, active,
                         GenerationStats(prompt_tokens=len(prompt_ids))))
    results: list[GenerationResult | None] = [None] * len(rows)

    def finish(r: int, reason: str) -> None:
        row = rows[r]
        results[r] = _result(model.vocab, constraints[r], row.tokens, reason, row.stats, start_time)

    forward = _BatchForward(model.model, len(rows))
    live = list(range(len(rows)))  # the row behind each batch index
    while True:
        going = []
        for b, r in enumerate(live):
            reason = rows[r].reason or rows[r].stop()
            if reason is None:
                going.append(b)
            else:
                finish(r, reason)
        if not going:
            break
        if len(going) < len(live):
            forward.select(going)
            live = [live[b] for b in going]
        batch = [rows[r] for r in live]
        drafts = [row.draft() for row in batch]
        inputs = [row.feed + draft for row, draft in zip(batch, drafts)]
        starts = [len(row.history) - len(row.feed) for row in batch]
        t = time.perf_counter()
        logits = forward(inputs, starts, [len(d) + 1 for d in drafts])
        seconds = time.perf_counter() - t
        width = max(len(x) for x in inputs)
        for b, (row, draft) in enumerate(zip(batch, drafts)):
            row.stats.forward_seconds += seconds  # the shared pass, as this row waited for it
            row.stats.forward_passes += 1
            if len(row.feed) == 1:  # the prompt pass says nothing about the cost of a verify pass
                row.lengths.costs.observe(width, seconds)
            accepted = row.verify(logits[b])
            forward.reject(b, len(draft) - accepted)
        forward.tidy()
    assert all(r is not None for r in results)  # every row left the loop through finish()
    return results  # type: ignore[return-value]
