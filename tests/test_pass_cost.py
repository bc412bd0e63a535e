"""`PassCost`: measured forward-pass costs per width, padding to cheaper widths, exploration."""
from __future__ import annotations

from structgen.decoding.speculative import DraftLength, PassCost, _Estimate

# SmolLM2 on one CPU thread, ~700 cached tokens: CPU ms of passes of 1..13 positions
CURVE = [52, 72, 82, 70, 83, 84, 93, 84, 95, 95, 106, 98, 108]


def _measured(curve: list[float]) -> PassCost:
    costs = PassCost(len(curve))
    for width, ms in enumerate(curve, 1):
        for _ in range(PassCost.explore + 1):  # the first pass of a width is not recorded
            costs.observe(width, ms / 1000)
    return costs


def test_passes_are_padded_to_a_cheaper_width():
    costs = _measured(CURVE)
    assert costs.width(1) == 1
    assert costs.width(2) == 4 and costs.width(3) == 4  # 70 ms beats 72 and 82
    assert costs.width(7) == 8 and costs.width(5) == 5  # 84 < 93; 83 beats 84 by too little
    assert abs(costs.seconds(costs.width(3)) - 0.070) < 1e-9
    assert abs(costs.seconds(costs.width(7)) - 0.084) < 1e-9
    assert costs.width(13) == 13 and costs.width(20) == 20  # nothing wider to pad to


def test_widths_are_explored_before_they_are_trusted():
    costs = PassCost()
    for _ in range(PassCost.explore + 1):
        assert costs.width(1) == 1
        costs.observe(1, 0.05)
    seen = []
    for _ in range(4 * (PassCost.explore + 1)):
        width = costs.width(2)  # widths 2..5 in turn, each run until measured
        seen.append(width)
        costs.observe(width, 0.06 if width == 4 else 0.08)
    assert seen == [w for w in (2, 3, 4, 5) for _ in range(PassCost.explore + 1)]
    assert costs.width(2) == 4


def test_first_pass_of_a_width_and_outliers_do_not_count():
    costs = PassCost()
    costs.observe(1, 5.0)  # one-off setup
    assert costs.samples == {}
    for seconds in (0.05, 0.05, 3.0, 0.05):  # a pass stretched by a busy machine
        costs.observe(1, seconds)
    assert costs.seconds(1) == 0.05


def test_unmeasured_widths_follow_the_prior_through_the_nearest_measured_one():
    costs = PassCost()
    assert abs(costs.seconds(3) / costs.seconds(1) - (1 + 2 * PassCost.prior)) < 1e-9
    for _ in range(3):
        costs.observe(2, 0.115)  # width 1 never ran: scaled down from width 2, not taken as is
    assert abs(costs.seconds(1) - 0.1) < 1e-9
    for _ in range(3):
        costs.observe(6, 0.2)
    assert abs(costs.seconds(4) - (0.115 + (0.2 - 0.115) / 2)) < 1e-9  # between measured ones


def test_draft_length_follows_the_measured_curve():
    """A line fitted to 2-position passes (72 vs 52 ms: +20 ms a position) would price 7 drafts
    at 192 ms; measured, 8 positions cost 84 ms, so well-accepted drafters draft long."""
    lengths = DraftLength(costs=_measured(CURVE))
    for _ in range(20):
        lengths.observe_draft("forced", 8, 8)
    assert lengths.k_for("forced") >= 7
    for _ in range(20):
        lengths.observe_draft("poor", 0, 1)
    assert lengths.k_for("poor") == 0


def test_a_kind_below_min_alpha_only_probes():
    """On a flat cost table (extra positions nearly free) a kind at 0.2 acceptance would still
    pay to draft at the marginal price; below `min_alpha` it drafts nothing but probes."""
    lengths = DraftLength(costs=_measured([50.0] * 13))
    est = lengths.estimates.setdefault("weak", _Estimate())
    est.accepted, est.rejected = 0.2, 0.8
    ks = [lengths.k_for("weak") for _ in range(2 * lengths.probe_every)]
    assert ks.count(1) == 2 and ks.count(0) == len(ks) - 2  # a probe every `probe_every` steps
    lengths.min_alpha = 0.0
    est.idle = 0
    assert lengths.k_for("weak") > 0  # the marginal price alone would keep it drafting
