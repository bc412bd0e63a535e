"""Lossless verification of draft tokens, and how long drafts should be.

At every verify position the verifier returns a token distributed *exactly* as the masked
target p (after temperature/top-k/top-p, `sampling.masked_probs`), arranged so that it equals
the draft token as often as possible:

- greedy: the masked argmax (accepted iff it is the draft);
- one-hot drafts (forced, lookup, greedy model): draw y ~ p and accept iff y is the draft. This
  is the textbook one-hot rule ("accept x with probability p(x), else sample p without x,
  renormalised") written as a coupling: both give p(x) for x and p(y) for every y != x;
- sampled drafts x ~ q: accept with probability min(1, p(x)/q(x)), otherwise draw from
  normalise(max(0, p - q)). Standard speculative sampling; a q that ignored the constraint is
  still exact (p(x) = 0 rejects x with certainty and the residual stays inside the mask).

Because the token has law p whatever the draft was, the decode loop may post-process it exactly
as the plain loop does (budget-aware re-choice), keeping budgets exact under speculation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .sampling import SamplingParams, choose, masked_probs


def verify_token(
    logits: torch.Tensor,
    mask: torch.Tensor,
    params: SamplingParams,
    generator: torch.Generator | None,
    draft: int | None = None,
    q: torch.Tensor | None = None,
) -> int:
    """The token to emit at one position (law: masked p); equal to `draft` when it is accepted.

    `q` is the distribution `draft` was sampled from (None for a deterministic draft or none).
    """
    if params.greedy or draft is None or q is None:
        return choose(logits, mask, params, generator)
    p = masked_probs(logits, mask, params)
    px, qx = float(p[draft]), float(q[draft])
    if qx > 0 and float(torch.rand((), generator=generator)) * qx < px:  # u < p/q
        return draft
    residual = (p - q).clamp_min(0)
    total = float(residual.sum())
    if total <= 0:  # p == q up to rounding: the rejection had probability ~0, p is exact here
        residual = p
    return int(torch.multinomial(residual, 1, generator=generator))


@dataclass
class _Estimate:
    """Running acceptance of one drafter: per-token acceptance alpha of its drafts (geometric
    model: accepted tokens over accepted tokens plus rejections), exponentially forgetting."""

    accepted: float = 1.0  # prior: alpha = 0.5 with the weight of two observations
    rejected: float = 1.0
    idle: int = 0  # steps since this drafter was last allowed to draft

    @property
    def alpha(self) -> float:
        return self.accepted / (self.accepted + self.rejected)


@dataclass
class DraftLength:
    """Chooses each drafter's draft length k to maximise expected emitted tokens per second.

    With per-token acceptance alpha, drafting k tokens emits (1 - alpha^(k+1)) / (1 - alpha)
    tokens per verify pass (accepted drafts plus the bonus or correction token); the pass costs
    base + k * per_position (fitted online from the forward timings) plus k * draft_cost for a
    draft model. k = 0 (plain decoding) wins when drafts keep failing; a drafter benched that way
    is still probed with one token every `probe_every` steps so it can come back (cost: one extra
    position per `probe_every` passes, about 1% of a plain pass). Drafting must promise
    `margin` times the plain rate, so noisy timings do not keep a failing drafter alive.
    """

    max_k: int = 12
    probe_every: int = 16
    margin: float = 1.05  # drafting must promise 5% more tokens/s than plain (noisy timings)
    decay: float = 0.8
    base: float = 0.0  # seconds of a one-position pass (EMA)
    per_position: float = 0.0  # extra seconds per additional position (EMA)
    draft_cost: dict[str, float] = field(default_factory=dict)
    estimates: dict[str, _Estimate] = field(default_factory=dict)

    def observe_pass(self, positions: int, seconds: float) -> None:
        """Update the verify cost model with one forward pass."""
        if positions <= 1:
            self.base = seconds if self.base == 0 else 0.8 * self.base + 0.2 * seconds
        elif self.base > 0:
            extra = max(0.0, seconds - self.base) / (positions - 1)
            self.per_position = extra if self.per_position == 0 else 0.8 * self.per_position + 0.2 * extra

    def observe_draft(self, name: str, accepted: int, drafted: int) -> None:
        """`accepted` of `drafted` tokens from drafter `name` were accepted."""
        if drafted <= 0:
            return
        est = self.estimates.setdefault(name, _Estimate())
        est.accepted = self.decay * est.accepted + accepted
        est.rejected = self.decay * est.rejected + (1 if accepted < drafted else 0)

    def observe_cost(self, name: str, seconds: float, drafted: int) -> None:
        """Drafter `name` spent `seconds` proposing `drafted` tokens (a draft model's passes)."""
        if drafted <= 0:
            return
        cost = seconds / drafted
        old = self.draft_cost.get(name)
        self.draft_cost[name] = cost if old is None else 0.8 * old + 0.2 * cost

    def k_for(self, name: str) -> int:
        """Draft length for `name` in this step (0: do not draft)."""
        est = self.estimates.setdefault(name, _Estimate())
        base = self.base or 1.0
        # an extra position is never free: until measured assume 15% of a pass, then at least 2%
        per = max(self.per_position, 0.02 * base) if self.per_position else 0.15 * base
        cost = per + self.draft_cost.get(name, 0.0)
        alpha = min(est.alpha, 0.999)
        best_k, best_rate = 0, self.margin / base
        emitted, power = 1.0, 1.0
        for k in range(1, self.max_k + 1):
            power *= alpha
            emitted += power
            rate = emitted / (base + k * cost)
            if rate > best_rate:
                best_k, best_rate = k, rate
        if best_k == 0:
            est.idle += 1
            if est.idle >= self.probe_every:
                est.idle = 0
                return 1
        else:
            est.idle = 0
        return best_k
