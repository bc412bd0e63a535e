"""The single-row decode loop's KV cache: grown in place, read without copies.

Two copies dominate the cost of a forward pass over a long cache on CPU besides the weights
themselves, and neither is needed:

* transformers' `DynamicLayer` appends with `torch.cat`, copying every layer's whole cache at
  every step (a fifth of a one-token pass of SmolLM2 after an 800-token prompt). `GrowingLayer`
  writes new keys and values into a buffer with spare room (doubled when full) and hands out
  views; rolling back rejected drafts only moves its length.
* With an attention mask (every pass that verifies a draft), transformers' SDPA path repeats
  the key/value heads of grouped-query attention to the query heads (`repeat_kv`), copying the
  cache again per layer. `grouped_query_attention` asks it to pass the grouped heads to torch's
  kernel instead (`enable_gqa`), which reads them in place.

Both give transformers' logits: bit for bit on SmolLM2; on Gemma 3 past its sliding window torch
picks another kernel for the masked grouped heads and logits move by float rounding (~2e-5).
Sliding-window layers keep transformers' layer (bounded by the window), recording past states so
that a rollback past the window works: `crop` after every pass (`crop(0)` included) trims them.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_CAPACITY = 256


class GrowingLayer(DynamicLayer):
    """A full-attention cache layer whose keys/values are views of a buffer with spare room."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._length = 0
        self._key_buffer = self._value_buffer = key_states.new_empty((0,))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start, end = self._length, self._length + key_states.shape[-2]
        if self._key_buffer.dim() != 4 or end > self._key_buffer.shape[-2]:
            self._key_buffer = self._grown(self._key_buffer, key_states, end)
            self._value_buffer = self._grown(self._value_buffer, value_states, end)
        self._key_buffer[..., start:end, :] = key_states
        self._value_buffer[..., start:end, :] = value_states
        self._set_length(end)
        return self.keys, self.values

    def _grown(self, buffer: torch.Tensor, states: torch.Tensor, needed: int) -> torch.Tensor:
        shape = (*states.shape[:-2], max(MIN_CAPACITY, 2 * needed), states.shape[-1])
        grown = states.new_empty(shape)
        if self._length:
            grown[..., :self._length, :] = buffer[..., :self._length, :]
        return grown

    def _set_length(self, length: int) -> None:
        self._length = length
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative count (tokens to remove)")
        if tokens_to_remove and self.is_initialized:
            self._set_length(max(0, self._length + tokens_to_remove))

    def reset(self) -> None:
        self._length = 0
        super().reset()


def new_cache(model: Any) -> DynamicCache:
    """A `DynamicCache` for `model` whose full-attention layers grow in place and whose
    sliding-window layers can be rolled back (without past recording, transformers refuses to
    crop them once the window is full)."""
    cache = DynamicCache(config=model.config)
    cache.layers = [GrowingLayer() if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
    cache.activate_past_recording()
    return cache


@contextlib.contextmanager
def grouped_query_attention(model: Any) -> Iterator[None]:
    """Within the block, let transformers' SDPA attention pass grouped key/value heads to torch
    even with a mask (it reads `TRANSFORMERS_SDPA_FORCE_GQA` per call). Only on CPU: CUDA
    kernels fall back to a slower path for masked grouped-query attention."""
    config = model.config
    if (getattr(config, "_attn_implementation", None) != "sdpa"
            or next(model.parameters()).device.type != "cpu"):
        yield
        return
    old = os.environ.get("TRANSFORMERS_SDPA_FORCE_GQA")
    os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TRANSFORMERS_SDPA_FORCE_GQA"]
        else:
            os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = old
