"""Logits only where the decode loop looks: the output head applied per position, per mask.

A verify pass needs, at each position, the logits of the tokens the constraint allows there —
and under a JSON schema about two thirds of the positions allow a few tokens only (keys,
punctuation, enum values, digits; 15 % exactly one). The output head (hidden state → one logit
per vocabulary token) is SmolLM2's largest matrix (49,152 × 576, 13 % of a one-token pass on
CPU, a fifth of each further verified position), so the loop runs the model's body, keeps the
hidden states, and applies the head lazily: rows of the allowed tokens only when the mask is
small, the full head (for all remaining positions at once) when it is not. Positions after a
rejected draft token never pay for the head at all.

Masked-out logits are -inf, so sampling and greedy choice over the mask see exactly the
allowed logits. Only models whose logits are `head(hidden)` (optionally soft-capped) qualify;
`OutputHead.of` checks that on a probe once per model and otherwise returns None (full
forward passes, as before).
"""
from __future__ import annotations

import weakref
from typing import Any

import torch

#: Masks allowing at most this fraction of the vocabulary get logits from the head's rows of
#: the allowed tokens alone: gathering those rows costs as much as the full product per position
#: past about a twentieth of the vocabulary (SmolLM2 and Gemma-3 on CPU).
SPARSE_FRACTION = 1 / 24

_HEADS: "weakref.WeakKeyDictionary[Any, OutputHead | None]" = weakref.WeakKeyDictionary()


class OutputHead:
    """`logits = softcap(hidden @ weight.T + bias)` of a transformers causal LM."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, softcap: float | None):
        self.weight = weight
        self.bias = bias
        self.softcap = softcap

    @staticmethod
    def of(model: Any) -> "OutputHead | None":
        """The head of `model` when its logits are exactly that (checked on a probe; cached)."""
        if model in _HEADS:
            return _HEADS[model]
        head = None
        linear = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if isinstance(linear, torch.nn.Linear) and hasattr(model, "get_decoder"):
            cap = getattr(model.config, "final_logit_softcapping", None)
            candidate = OutputHead(linear.weight, linear.bias, cap)
            if _agrees(model, candidate):
                head = candidate
        _HEADS[model] = head
        return head

    def apply(self, hidden: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of `hidden` (..., H) for every token, or for the token ids `ids` only."""
        weight = self.weight if ids is None else self.weight.index_select(0, ids)
        out = hidden @ weight.T
        if self.bias is not None:
            out = out + (self.bias if ids is None else self.bias.index_select(0, ids))
        if self.softcap is not None:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out


@torch.inference_mode()
def _agrees(model: Any, head: OutputHead) -> bool:
    """One probe pass: do the model's logits equal the head applied to its last hidden state?"""
    probe = torch.arange(1, 5, device=head.weight.device).unsqueeze(0)
    out = model(input_ids=probe, use_cache=False, output_hidden_states=True)
    want = out.logits[0].float()
    got = head.apply(out.hidden_states[-1][0]).float()
    return want.shape == got.shape and torch.allclose(want, got, rtol=1e-4, atol=1e-4)


class LogitRows:
    """The logits of a pass's last `n` positions, computed on demand.

    `rows[i]` is the full row (float32, CPU; a slice stacks rows); `rows.masked(i, mask)` is
    row i with -inf where `mask` is False — from the head rows of the allowed tokens alone when
    they are few.
    """

    def __init__(self, hidden: torch.Tensor, head: OutputHead) -> None:
        self.hidden = hidden  # (n, H)
        self.head = head
        self._full: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.hidden.shape[0]

    def __getitem__(self, i: int | slice) -> torch.Tensor:
        if isinstance(i, slice):
            picked = range(*i.indices(len(self)))
            if not picked:
                return torch.empty((0, self.head.weight.shape[0]))
            return torch.stack([self[j] for j in picked])
        if i < 0:
            i += len(self)
        if i not in self._full:  # this and every later position: one product, as a full pass
            with torch.inference_mode():
                rows = self.head.apply(self.hidden[i:]).float().cpu()
            for j in range(i, len(self)):
                self._full.setdefault(j, rows[j - i])
        return self._full[i]

    def masked(self, i: int, mask: torch.Tensor) -> torch.Tensor:
        if i in self._full:
            return self._full[i].masked_fill(~mask, float("-inf"))
        ids = mask.nonzero().squeeze(1)
        if len(ids) > SPARSE_FRACTION * len(mask):
            return self[i].masked_fill(~mask, float("-inf"))
        out = torch.full((self.head.weight.shape[0],), float("-inf"))
        with torch.inference_mode():
            out[ids] = self.head.apply(self.hidden[i], ids.to(self.hidden.device)).float().cpu()
        return out
