"""JSON Schema conformance: the official test suite and a MaskBench sample through token masks.

No false positive (invalid instance accepted) and no error are tolerated anywhere; pass counts
per suite file and the sample's rejected/refused counts may only improve, as recorded in
`tests/data/json_schema_ratchet.json` (raise it with `bench/schema_suite.py --update-ratchet`,
which also rewrites docs/json-schema-coverage.md). The harness itself is tested with fake
engines, so a broken runner cannot pass silently.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from structgen.schema import conformance as C

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RATCHET = Path(__file__).resolve().parent / "data" / "json_schema_ratchet.json"

needs_suite = pytest.mark.skipif(not C.suite_dir(DATA).is_dir(),
                                 reason=f"JSON Schema Test Suite not found under {DATA}")
needs_maskbench = pytest.mark.skipif(not (DATA / "maskbench").is_dir(),
                                     reason=f"MaskBench data not found under {DATA}")


# ---------------------------------------------------------------------------
# The harness, with fake engines (no model, no JsonSchema)
# ---------------------------------------------------------------------------


class _FakeMatcher:
    """Accepts an id sequence iff `rule(ids)`; rejects at the first id past a bad prefix."""

    def __init__(self, rule: Any, crash_on: int | None, mask_allows: bool = True) -> None:
        self._rule, self._crash_on, self._mask_allows, self._ids = rule, crash_on, mask_allows, []

    def mask(self) -> list[int]:
        return []

    def consume(self, token_id: int) -> bool:
        if token_id == self._crash_on:
            raise RuntimeError("boom\nsecond line")
        self._ids.append(token_id)
        return True

    def is_accepting(self) -> bool:
        return bool(self._rule(tuple(self._ids)))

    def allows(self, mask: Any, token_id: int) -> bool:
        return self._mask_allows


class _FakeEngine:
    name = "fake"

    def __init__(self, rule: Any = lambda ids: True, compile_error: Exception | None = None,
                 crash_on: int | None = None, mask_allows: bool = True) -> None:
        self.rule, self.compile_error, self.crash_on = rule, compile_error, crash_on
        self.mask_allows = mask_allows

    def compile(self, schema: Any, *, format_assertion: bool) -> Any:
        if self.compile_error is not None:
            raise self.compile_error
        return schema

    def matcher(self, compiled: Any) -> _FakeMatcher:
        return _FakeMatcher(self.rule, self.crash_on, self.mask_allows)


def _prepared(*instances: tuple[Any, bool]) -> C.PreparedCase:
    case = C.Case("f.json", "group", {}, tuple(C.Instance(f"i{k}", d, v) for k, (d, v) in enumerate(instances)))
    # one id per character: enough to tell spellings apart
    return C.prepare([case], lambda text: tuple(ord(ch) for ch in text))[0]


def test_outcomes_are_classified() -> None:
    case = _prepared((1, True), ("x", False))
    accept_all = C.run_case(_FakeEngine(), case)
    assert [i.outcome for i in accept_all.instances] == ["pass", "false_positive"]
    reject_all = C.run_case(_FakeEngine(rule=lambda ids: False), case)
    assert [i.outcome for i in reject_all.instances] == ["false_negative", "pass"]
    assert reject_all.status == "compiled" and reject_all.ttfm_s is not None


def test_masks_are_timed_on_valid_instances_and_checked_against_consume() -> None:
    case = _prepared(("ab", True), ("abc", False))  # '"ab"': 4 ids, 5 masks
    agree = C.run_case(_FakeEngine(), case, time_masks=True)
    assert len(agree.mask_s) == 5 and agree.mask_mismatches == 0
    assert C.run_case(_FakeEngine(), case).mask_s == []
    disagree = C.run_case(_FakeEngine(mask_allows=False), case, time_masks=True)
    assert disagree.mask_mismatches == 4


def test_refusal_and_errors_are_recorded() -> None:
    case = _prepared((1, True), (2, False))
    refused = C.run_case(_FakeEngine(compile_error=C.Refused("no", "uniqueItems", "/items")), case)
    assert (refused.status, refused.keyword, refused.pointer) == ("refused", "uniqueItems", "/items")
    assert [i.outcome for i in refused.instances] == ["refused", "refused"]
    broken = C.run_case(_FakeEngine(compile_error=KeyError("x")), case)
    assert broken.status == "error" and broken.detail == "KeyError: 'x'"
    crash = C.run_case(_FakeEngine(crash_on=ord("2")), case)
    assert [i.outcome for i in crash.instances] == ["pass", "error"]
    assert crash.instances[1].detail == "RuntimeError: boom"
    assert C.failures([crash], ["error"]) == ["error: f.json | group | i1 | RuntimeError: boom"]


def test_non_ascii_is_checked_in_both_spellings() -> None:
    assert C.spellings("é") == ['"\\u00e9"', '"é"']
    assert C.spellings("e") == ['"e"']
    # accepts only the \u-escaped spelling: a valid value can be written, an invalid one gets through
    escaped_only = _FakeEngine(rule=lambda ids: ord("\\") in ids)
    assert C.run_case(escaped_only, _prepared(("é", True))).instances[0].outcome == "pass"
    assert C.run_case(escaped_only, _prepared(("é", False))).instances[0].outcome == "false_positive"
    neither = _FakeEngine(rule=lambda ids: False)
    assert C.run_case(neither, _prepared(("é", True))).instances[0].outcome == "false_negative"
    crash_raw = _FakeEngine(crash_on=ord("é"))
    assert C.run_case(crash_raw, _prepared(("é", True))).instances[0].outcome == "error"


def test_untokenizable_text_is_reported() -> None:
    class Tok:
        def encode(self, text: str, add_special_tokens: bool) -> list[int]:
            assert not add_special_tokens
            return [0, 1]

    encode = C.make_encoder(Tok(), [b"a", b"b"])
    assert encode("ab") == (0, 1)
    assert encode("ba") is None
    case = C.prepare([C.Case("s", "d", {}, (C.Instance("i", "ab", True),))], encode)[0]
    assert C.run_case(_FakeEngine(), case).instances[0].outcome == "untokenizable"


def test_ratchet_only_moves_forward() -> None:
    old = {"suite": {"a.json": {"pass": 5, "false_negative": 1}},
           "maskbench_sample": {"false_negative": 2, "refused": 3}}
    worse = {"a.json": Counter({"pass": 4, "false_negative": 2})}
    regressions = C.ratchet_regressions(old, worse, Counter({"refused": 4}))
    assert regressions == ["a.json: 4 pass < ratchet 5", "a.json: 2 false_negative > ratchet 1",
                           "MaskBench sample: 4 refused > ratchet 3"]
    better = {"a.json": Counter({"pass": 6}), "b.json": Counter({"pass": 1, "refused": 2})}
    new = C.raised_ratchet(old, better, Counter({"false_negative": 3, "refused": 1}))
    assert new == {"suite": {"a.json": {"pass": 6, "false_negative": 0}, "b.json": {"pass": 1, "false_negative": 0}},
                   "maskbench_sample": {"false_negative": 2, "refused": 1}}
    assert C.ratchet_regressions(new, better, Counter({"false_negative": 2, "refused": 1})) == []
    assert C.raised_ratchet(old, worse, Counter(), reset=True)["suite"]["a.json"] == {"pass": 4, "false_negative": 2}


@needs_suite
def test_suite_loading_and_registry() -> None:
    cases = C.load_suite(C.suite_dir(DATA))
    sources = {c.source for c in cases}
    assert {"ref.json", "format.json", "optional/bignum.json", "optional/format/date.json"} <= sources
    assert all(c.format_assertion == (c.source != "format.json") for c in cases)
    resolver = C.suite_registry(DATA).resolver()
    assert resolver.lookup("http://localhost:1234/draft2020-12/integer.json").contents["type"] == "integer"
    assert "$defs" in resolver.lookup("http://localhost:1234/draft2020-12/subSchemas.json").contents
    assert resolver.lookup("https://json-schema.org/draft/2020-12/schema").contents["$id"].endswith("2020-12/schema")


# ---------------------------------------------------------------------------
# structgen.JsonSchema on the official suite and on MaskBench
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def suite_results(smollm2: Any) -> list[C.CaseResult]:
    engine = C.StructgenSchemaEngine(smollm2.tokenizer, C.suite_registry(DATA), smollm2.vocab.width)
    encode = C.make_encoder(smollm2.tokenizer, smollm2.vocab.token_bytes)
    results = C.run_cases(engine, C.prepare(C.load_suite(C.suite_dir(DATA)), encode))
    print("\nJSON Schema Test Suite (draft 2020-12):", dict(C.outcome_counts(results)))
    return results


@pytest.fixture(scope="module")
def sample_results(smollm2: Any) -> list[C.CaseResult]:
    engine = C.StructgenSchemaEngine(smollm2.tokenizer, None, smollm2.vocab.width)
    encode = C.make_encoder(smollm2.tokenizer, smollm2.vocab.token_bytes)
    results = C.run_cases(engine, C.prepare(C.maskbench_sample(DATA), encode))
    print("\nMaskBench sample:", len(results), "schemas,", dict(C.outcome_counts(results)))
    return results


def _ratchet() -> dict[str, Any]:
    return json.loads(RATCHET.read_text(encoding="utf-8"))


@pytest.mark.model
@needs_suite
def test_suite_no_false_positive_no_error(suite_results: list[C.CaseResult]) -> None:
    bad = C.failures(suite_results, ["false_positive", "error", "untokenizable", "timeout"])
    assert not bad, f"{len(bad)} instances:\n" + "\n".join(bad[:40])


@pytest.mark.model
@needs_suite
def test_suite_ratchet(suite_results: list[C.CaseResult]) -> None:
    by_file = C.counts_by_source(suite_results)
    missing = set(_ratchet()["suite"]) - set(by_file)
    assert not missing, f"suite files in the ratchet but not run: {sorted(missing)}"
    regressions = C.ratchet_regressions({"suite": _ratchet()["suite"]}, by_file, Counter())
    assert not regressions, "\n".join(regressions)


@pytest.mark.model
@needs_maskbench
def test_maskbench_sample(sample_results: list[C.CaseResult]) -> None:
    bad = C.failures(sample_results, ["false_positive", "error", "untokenizable", "timeout"])
    assert not bad, f"{len(bad)} instances:\n" + "\n".join(bad[:40])
    counts = Counter(C.outcome_counts(sample_results))
    regressions = C.ratchet_regressions({"maskbench_sample": _ratchet()["maskbench_sample"]}, {}, counts)
    assert not regressions, "\n".join(regressions + C.failures(sample_results, ["false_negative"])[:20])
