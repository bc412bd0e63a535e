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

import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

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


class PassCost:
    """Seconds of a forward pass by its width (positions fed), measured: the median of the
    last `window` passes of each width.

    Not a line base + k * per_position: on CPU the matmul kernels make some widths dearer than
    wider ones (SmolLM2, 1 thread, ~700 cached tokens: 52, 72, 82, 70 ms for 1-4 positions, 93
    for 7 and 84 for 8), so a line fitted to short passes priced long drafts 2-3x too high and
    kept drafts short. Padding a pass to a wider, cheaper width is free for correctness (the
    extra positions are cropped like rejected drafts), so n positions cost the cheapest width
    in n..n+MAX_PAD (`width`). Each width is run `explore` times before it is trusted
    (padding a pass to an unmeasured width), so a cheap width is found once per table; the
    loop keeps one table per model, as the costs belong to the model and the machine.
    """

    MAX_PAD = 3
    window = 9
    explore = 3
    prior = 0.15  # an unmeasured extra position: 15% of a one-position pass
    floor = 0.02  # an extra position is never free: at least 2% of a one-position pass

    def __init__(self, max_width: int = 13, clock: Callable[[], float] = time.perf_counter) -> None:
        self.max_width = max_width
        self.clock = clock  # CPU time for a model on the CPU: other processes do not skew it
        self.samples: dict[int, deque[float]] = {}
        self._medians: dict[int, float] = {}
        self._warm: set[int] = set()  # widths run once

    def observe(self, width: int, seconds: float) -> None:
        """One forward pass of `width` positions took `seconds`."""
        if not 1 <= width <= self.max_width:
            return
        if width not in self._warm:  # a width's first pass pays one-off setup (allocator, kernels)
            self._warm.add(width)
            return
        samples = self.samples.setdefault(width, deque(maxlen=self.window))
        samples.append(seconds)
        self._medians[width] = statistics.median(samples)

    def seconds(self, n: int) -> float:
        """Estimated seconds of a pass of exactly `n` positions: measured, else interpolated
        between the nearest measured widths, else the prior line through the nearest one."""
        measured = self._medians
        if n in measured:
            return measured[n]
        below = max((w for w in measured if w < n), default=None)
        above = min((w for w in measured if w > n), default=None)
        if below is not None and above is not None:
            lo, hi = measured[below], measured[above]
            return lo + (hi - lo) * (n - below) / (above - below)
        near = below if below is not None else above
        if near is None:
            return 1 + self.prior * (n - 1)
        return measured[near] * (1 + self.prior * (n - 1)) / (1 + self.prior * (near - 1))

    def width(self, n: int) -> int:
        """The width to run `n` positions at: an under-measured width of n..n+MAX_PAD first
        (exploration), else the cheapest (a wider one only if 2% cheaper)."""
        for w in self._widths(n):
            if len(self.samples.get(w, ())) < self.explore:
                return w
        return self._cheapest(n)

    def marginal(self) -> float:
        """Seconds one more position adds to a wide pass: the slope from 4 positions to the
        widest, at least the floor."""
        wide = self.max_width
        slope = (self.seconds(wide) - self.seconds(4)) / (wide - 4) if wide > 4 else 0.0
        return max(slope, self.floor * self.seconds(1))

    def _widths(self, n: int) -> range:
        return range(n, max(n, min(n + self.MAX_PAD, self.max_width)) + 1)

    def _cheapest(self, n: int) -> int:
        best, best_s = n, self.seconds(n)
        for w in self._widths(n)[1:]:
            s = self.seconds(w)
            if s < 0.98 * best_s:
                best, best_s = w, s
        return best


@dataclass
class DraftLength:
    """Chooses each drafter's draft length k to maximise expected emitted tokens per second.

    With per-token acceptance alpha, drafting k tokens emits (1 - alpha^(k+1)) / (1 - alpha)
    tokens per verify pass (accepted drafts plus the bonus or correction token); the pass costs
    a one-position pass plus k marginal positions (measured, `PassCost.marginal`) plus
    k * draft_cost for a draft model.
    k = 0 (plain decoding) wins when drafts keep failing; a drafter benched that way is still
    probed with one token every `probe_every` steps so it can come back (cost: one extra
    position per `probe_every` passes, about 1% of a plain pass). Drafting must promise
    `margin` times the plain rate, so noisy timings do not keep a failing drafter alive.
    """

    max_k: int = 12
    probe_every: int = 16
    margin: float = 1.05  # drafting must promise 5% more tokens/s than plain (noisy timings)
    min_alpha: float = 0.25  # below it a kind is benched (probes only): see `k_for`
    decay: float = 0.8
    costs: PassCost = field(default_factory=PassCost)
    draft_cost: dict[str, float] = field(default_factory=dict)
    estimates: dict[str, _Estimate] = field(default_factory=dict)

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
        """Draft length for `name` in this step (0: do not draft). A position is priced at its
        marginal cost in a wide pass (`PassCost.marginal`), not at the jump from one position
        to 2-4 (~+40% on CPU): drafters chain into one pass, so nearly every pass is wide
        anyway on structured output, and pricing each kind as if it paid the jump alone kept
        drafts short (replayed extraction outputs: modelled cost 2,509 -> 2,040 one-token
        passes for 4,618 tokens; a draft-level check of the jump dropped useful drafts, 2,361).
        A kind whose acceptance falls below `min_alpha` drafts nothing but probes: alone, its
        one-token drafts would pay the jump for little (a drafter that keeps failing was kept
        drafting ~10 times in 40 tokens by the marginal price; the replay costs 2,066 with the
        bound)."""
        est = self.estimates.setdefault(name, _Estimate())
        base = self.costs.seconds(1)
        per = self.costs.marginal() + self.draft_cost.get(name, 0.0)
        alpha = min(est.alpha, 0.999)
        best_k, best_rate = 0, self.margin / base
        emitted, power = 1.0, 1.0
        for k in range(1, self.max_k + 1 if alpha >= self.min_alpha else 1):
            power *= alpha
            emitted += power
            rate = emitted / (base + k * per)
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
