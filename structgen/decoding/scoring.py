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

import time
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

    def screen(self) -> "Screen | None":
        """The head's bf16 screen for greedy choices (built and checked on first use), or None
        where it would not pay or not be exact: off CPU, soft-capped logits (tanh saturates,
        so capped ties need exact values), or bf16 products slower or less exact than assumed."""
        if not hasattr(self, "_screen"):
            self._screen = Screen.of(self)
        return self._screen

    def apply(self, hidden: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of `hidden` (..., H) for every token, or for the token ids `ids` only."""
        weight = self.weight if ids is None else self.weight.index_select(0, ids)
        out = hidden @ weight.T
        if self.bias is not None:
            out = out + (self.bias if ids is None else self.bias.index_select(0, ids))
        if self.softcap is not None:
            out = torch.tanh(out / self.softcap) * self.softcap
        return out


class Screen:
    """Rules tokens out of a greedy choice with a bf16 copy of the head.

    On CPUs with bf16 matrix units the head's product for several positions costs a third of
    the float32 one (SmolLM2, 8 positions: 8 vs 28 ms), and a verify pass needs the masked
    argmax at every position it reaches. The bf16 logit a_j of token j is within
    eps_j = c * |h| * |w_j| + 2u * |a_j| of the float32 one (u = 2^-8 for rounding hidden state,
    weights and result to bf16; c = (2u + u^2 + K * 2^-24)(1 + u)^2 with float32 accumulation over
    the hidden size K; Cauchy-Schwarz for sum |h_i||w_ij|). Every token whose a_j + eps_j
    reaches the best a_k - eps_k may be the argmax; only those get exact logits (a median of 4
    of SmolLM2's 49,152 tokens). `of` checks the bound on random states and times both products
    once per head; no screen where it fails or does not pay.
    """

    U = 2.0 ** -8

    def __init__(self, head: OutputHead) -> None:
        weight = head.weight.detach()
        self.weight = weight.to(torch.bfloat16)
        self.norms = weight.float().norm(dim=1)
        self.bias = head.bias
        u, k = self.U, weight.shape[1]
        self.factor = (2 * u + u * u + k * 2.0 ** -24) * (1 + u) ** 2

    @staticmethod
    def of(head: OutputHead) -> "Screen | None":
        if head.softcap is not None or head.weight.device.type != "cpu":
            return None
        screen = Screen(head)
        with torch.inference_mode():
            # random states with norms of the order of real ones (~50-100)
            probe = 3 * torch.randn((4, head.weight.shape[1]), generator=torch.Generator().manual_seed(0))
            exact = head.apply(probe).float()
            for rows in (probe, probe[:1]):  # the matrix and the vector product
                approx, eps = screen.bounds(rows)
                if not bool(((approx - exact[:len(rows)]).abs() <= 0.5 * eps).all()):
                    return None  # bf16 products not accumulated in float32 here
            times = {}
            for name, run in (("bf16", lambda: screen.bounds(probe)), ("fp32", lambda: head.apply(probe))):
                run()
                t = time.perf_counter()
                run()
                times[name] = time.perf_counter() - t
        return screen if times["bf16"] < 0.7 * times["fp32"] else None

    def bounds(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bf16 logits as float32, their error bounds) of `hidden` (n, K), each (n, V)."""
        low = hidden.to(torch.bfloat16)
        if len(low) == 1:  # a matrix-vector product is twice as fast as a one-row matmul here
            approx = torch.mv(self.weight, low[0]).float().unsqueeze(0)
        else:
            approx = (low @ self.weight.T).float()
        if self.bias is not None:
            approx = approx + self.bias.float()
        eps = (self.factor * hidden.float().norm(dim=1, keepdim=True) * self.norms
               + 2 * self.U * approx.abs())
        return approx, eps


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
        self._screened: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

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

    def argmax(self, i: int, mask: torch.Tensor) -> int:
        """`int(self.masked(i, mask).argmax())` (ties: the lowest id). Where the full row
        would be needed and the head has a `Screen`, bf16 logits of this and every later
        position (one product) rule out all but a few tokens, and only those get exact logits."""
        screen = self.head.screen() if i not in self._full else None
        if screen is None or int(mask.sum()) <= SPARSE_FRACTION * len(mask):
            return int(self.masked(i, mask).argmax())
        if i not in self._screened:
            with torch.inference_mode():
                approx, eps = screen.bounds(self.hidden[i:])
            for j in range(i, len(self)):
                self._screened.setdefault(j, (approx[j - i], eps[j - i]))
        approx, eps = self._screened[i]
        allowed = approx.masked_fill(~mask, float("-inf"))
        floor = (allowed - eps).max()
        ids = ((allowed + eps >= floor) & mask).nonzero().squeeze(1)
        with torch.inference_mode():
            exact = self.head.apply(self.hidden[i], ids.to(self.hidden.device)).float().cpu()
        return int(ids[int(exact.argmax())])

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
