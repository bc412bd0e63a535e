"""JSON Schema conformance runner: schema + instances + expected validity, through token masks.

One implementation shared by `tests/test_json_schema_suite.py` (assertions and ratchet) and by
`bench/schema_suite.py` / `bench/maskbench.py` (coverage document, peers side by side), so the
number a test checks and the number a benchmark reports are computed the same way.

Method (no model, only its tokenizer): compile the schema once (time to first mask); for every
instance, tokenize ``json.dumps(instance)`` (no special tokens), feed the ids one by one through a
fresh matcher's ``consume``; the instance is accepted iff every token is consumed and the matcher
ends accepting. Outcomes per instance:

* ``pass`` – accepted and valid, or rejected and invalid;
* ``false_positive`` – an invalid instance accepted (the worst: a silent weakening);
* ``false_negative`` – a valid instance rejected;
* ``refused`` – the engine refused the schema at compile time (structgen: `SchemaError`);
* ``error`` – any other exception (a bug), with a one-line summary;
* ``timeout`` – the benchmark's per-case time limit ran out (never produced in-process);
* ``untokenizable`` – the tokenizer does not round-trip the text (a harness problem, not the
  engine's: the ids would not spell the instance).

An instance whose ``json.dumps`` contains ``\\u`` escapes of non-ASCII characters is also checked
as raw UTF-8 (``ensure_ascii=False``). An invalid instance is a false positive if *either*
spelling is accepted (no spelling of an invalid value may get through); a valid one passes if
*either* is accepted (an engine may spell each value one way, e.g. keys and constants as forced
text, as long as every valid value can be written). An exception on either is an error.
"""
from __future__ import annotations

import gzip
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence


SUITE_DRAFT = "draft2020-12"
# The official suite serves remotes/ at this base (its refRemote tests assume it).
REMOTES_BASE = "http://localhost:1234/"


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One instance to check: its description, JSON value and expected validity."""

    description: str
    data: Any
    valid: bool


@dataclass(frozen=True)
class Case:
    """One schema with its instances. `source` is the suite file (relative to the draft folder)
    or the MaskBench subset; `format_assertion` is passed to the engine."""

    source: str
    description: str
    schema: Any
    instances: tuple[Instance, ...]
    format_assertion: bool = True


@dataclass(frozen=True)
class PreparedInstance:
    """An instance tokenized once, for every engine alike: one id sequence per spelling
    (None where the tokenizer does not round-trip that spelling)."""

    description: str
    valid: bool
    spellings: tuple[tuple[int, ...] | None, ...]


@dataclass(frozen=True)
class PreparedCase:
    source: str
    description: str
    schema: Any
    format_assertion: bool
    instances: tuple[PreparedInstance, ...]


def suite_dir(data: Path) -> Path:
    """The draft 2020-12 folder of the official suite under a data folder."""
    return Path(data) / "json-schema-test-suite" / SUITE_DRAFT


def load_suite(draft_dir: Path) -> list[Case]:
    """Every test group of the suite's draft folder, optional/ and optional/format/ included.

    The top-level ``format.json`` checks that `format` is an annotation only, so it runs with
    format assertion off; everything else (optional/format/ in particular) with it on.
    """
    draft_dir = Path(draft_dir)
    cases = []
    for path in sorted(draft_dir.rglob("*.json")):
        rel = path.relative_to(draft_dir).as_posix()
        for group in json.loads(path.read_text(encoding="utf-8")):
            cases.append(Case(
                source=rel,
                description=group["description"],
                schema=group["schema"],
                instances=tuple(Instance(t["description"], t["data"], bool(t["valid"]))
                                for t in group["tests"]),
                format_assertion=rel != "format.json",
            ))
    return cases


def suite_file_group(source: str) -> str:
    """How the coverage report groups a suite file: required, optional/format, optional."""
    if source.startswith("optional/format/"):
        return "optional/format"
    if source.startswith("optional/"):
        return "optional"
    return "required"


def suite_registry(data: Path) -> Any:
    """A `referencing.Registry` holding the suite's remotes/ at ``http://localhost:1234/`` and
    the official metaschemas.

    structgen refuses remote `$ref`s unless the caller passes a registry (no network); the
    suite's refRemote tests assume those documents are served, so the suite run passes this one.
    Files under a ``draftN`` folder default to that draft's dialect (they may omit `$schema`).
    """
    import jsonschema_specifications
    from referencing import Resource
    from referencing import jsonschema as rjs

    remotes = Path(data) / "json-schema-test-suite" / "remotes"
    dialects = {"draft3": rjs.DRAFT3, "draft4": rjs.DRAFT4, "draft6": rjs.DRAFT6,
                "draft7": rjs.DRAFT7, "draft2019-09": rjs.DRAFT201909, "draft2020-12": rjs.DRAFT202012}
    pairs = []
    for path in sorted(remotes.rglob("*.json")):
        rel = path.relative_to(remotes).as_posix()
        spec = dialects.get(rel.split("/", 1)[0], rjs.DRAFT202012)
        contents = json.loads(path.read_text(encoding="utf-8"))
        pairs.append((REMOTES_BASE + rel, Resource.from_contents(contents, default_specification=spec)))
    return jsonschema_specifications.REGISTRY.with_resources(pairs)


def maskbench_subsets(data: Path) -> list[str]:
    """Names of the MaskBench subsets (``<data>/maskbench/<name>.jsonl.gz``)."""
    return sorted(p.name[: -len(".jsonl.gz")] for p in (Path(data) / "maskbench").glob("*.jsonl.gz"))


def load_maskbench(data: Path, subset: str) -> list[Case]:
    """One MaskBench subset: lines of {id, schema, tests: [{data, valid}]}."""
    cases = []
    with gzip.open(Path(data) / "maskbench" / f"{subset}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            cases.append(Case(
                source=subset,
                description=row["id"],
                schema=row["schema"],
                instances=tuple(Instance(t.get("description", f"test {i}"), t["data"], bool(t["valid"]))
                                for i, t in enumerate(row["tests"])),
            ))
    return cases


def sample_cases(cases: Sequence[Case], n: int | None, seed: int,
                 max_schema_chars: int | None = None) -> list[Case]:
    """`n` cases drawn without replacement with a fixed seed (all of them when n is None),
    optionally only among schemas whose compact JSON is at most `max_schema_chars` long."""
    pool = list(cases)
    if max_schema_chars is not None:
        pool = [c for c in pool if len(json.dumps(c.schema, separators=(",", ":"))) <= max_schema_chars]
    if n is None or n >= len(pool):
        return pool
    return random.Random(seed).sample(pool, n)


# The MaskBench sample `make test` runs (and the ratchet counts): 2 schemas per subset, fixed
# seed, only schemas up to 8 KB of compact JSON so that it stays within about a minute.
SAMPLE_PER_SUBSET = 2
SAMPLE_SEED = 0
SAMPLE_MAX_SCHEMA_CHARS = 8000


def maskbench_sample(data: Path, per_subset: int = SAMPLE_PER_SUBSET, seed: int = SAMPLE_SEED,
                     max_schema_chars: int = SAMPLE_MAX_SCHEMA_CHARS) -> list[Case]:
    """The fixed MaskBench sample: `per_subset` small schemas per subset."""
    out: list[Case] = []
    for k, subset in enumerate(maskbench_subsets(data)):
        out += sample_cases(load_maskbench(data, subset), per_subset, seed + k, max_schema_chars)
    return out


# ---------------------------------------------------------------------------
# Tokenization
# ---------------------------------------------------------------------------


def spellings(data: Any) -> list[str]:
    """``json.dumps(data)``, plus its raw-UTF-8 spelling when that differs (non-ASCII text)."""
    escaped = json.dumps(data)
    raw = json.dumps(data, ensure_ascii=False)
    return [escaped] if raw == escaped else [escaped, raw]


def make_encoder(tokenizer: Any, token_bytes: Sequence[bytes | None]) -> Callable[[str], tuple[int, ...] | None]:
    """text → token ids (no special tokens), or None when the ids' bytes do not spell the text."""

    def encode(text: str) -> tuple[int, ...] | None:
        ids = tuple(int(i) for i in tokenizer.encode(text, add_special_tokens=False))
        parts = [token_bytes[i] if 0 <= i < len(token_bytes) else None for i in ids]
        if any(p is None for p in parts) or b"".join(parts) != text.encode("utf-8"):  # type: ignore[arg-type]
            return None
        return ids

    return encode


def prepare(cases: Iterable[Case], encode: Callable[[str], tuple[int, ...] | None]) -> list[PreparedCase]:
    """Tokenize every instance once (so every engine sees the same ids)."""
    return [
        PreparedCase(c.source, c.description, c.schema, c.format_assertion, tuple(
            PreparedInstance(i.description, i.valid, tuple(encode(s) for s in spellings(i.data)))
            for i in c.instances))
        for c in cases
    ]


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------


class Refused(Exception):
    """The engine declined the schema at compile time (the `refused` outcome)."""

    def __init__(self, message: str, keyword: str | None = None, pointer: str | None = None) -> None:
        super().__init__(message)
        self.keyword = keyword
        self.pointer = pointer


class SchemaMatcher(Protocol):
    def mask(self) -> Any: ...
    def consume(self, token_id: int) -> bool: ...
    def is_accepting(self) -> bool: ...
    def allows(self, mask: Any, token_id: int) -> bool: ...


class SchemaEngine(Protocol):
    """What the runner needs of an engine; `compile` raises `Refused` for a declined schema."""

    name: str

    def compile(self, schema: Any, *, format_assertion: bool) -> Any: ...
    def matcher(self, compiled: Any) -> SchemaMatcher: ...


class _StructgenMatcher:
    def __init__(self, matcher: Any) -> None:
        self._m = matcher

    def mask(self) -> Any:
        return self._m.mask()

    def consume(self, token_id: int) -> bool:
        return self._m.consume(token_id)

    def is_accepting(self) -> bool:
        return self._m.is_accepting()

    def allows(self, mask: Any, token_id: int) -> bool:
        return bool(mask[token_id])


class StructgenSchemaEngine:
    """structgen under the settings of the conformance run: any property order (the suite's
    instances come in any order), flexible whitespace (``json.dumps`` writes ``", "`` and
    ``": "``) and every spelling of a value accepted (not only the canonical one generation
    writes). `property_order="schema"` is the peers' semantics (a benchmark option)."""

    name = "structgen"

    def __init__(self, tokenizer: Any, registry: Any = None, width: int | None = None,
                 property_order: str = "any") -> None:
        self._target = tokenizer
        self._registry = registry
        self._width = width
        self._property_order = property_order

    def compile(self, schema: Any, *, format_assertion: bool) -> Any:
        """A cold compile: a schema compiled before (a case may recur) is not taken from the
        shared constraints (`Constraint._shared`). The new one is not left shared either, so
        its automaton is freed with the case (dropping it at the next compile would put its
        deallocation inside that compile's timed window)."""
        from structgen.constraints.base import forget_shared
        from structgen.constraints.json_schema import JsonSchema
        from structgen.errors import SchemaError

        forget_shared()
        try:
            return JsonSchema(schema, property_order=self._property_order, whitespace="flexible",
                              spelling="any", format_assertion=format_assertion,
                              registry=self._registry)
        except SchemaError as e:
            raise Refused(str(e), getattr(e, "keyword", None), e.pointer) from e
        finally:
            forget_shared()

    def matcher(self, compiled: Any) -> SchemaMatcher:
        from structgen.errors import SchemaError
        from structgen.matcher import Matcher

        try:  # the automaton is built for the vocabulary on the first Matcher
            return _StructgenMatcher(Matcher(compiled, self._target, vocab_size=self._width))
        except SchemaError as e:
            raise Refused(str(e), getattr(e, "keyword", None), e.pointer) from e


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


@dataclass
class InstanceResult:
    description: str
    valid: bool
    outcome: str
    detail: str = ""


@dataclass
class CaseResult:
    """Outcome of one schema. `status`: compiled / refused / error / timeout; `ttfm_s`: time
    from the schema to the first mask; `mask_s`: per-mask times over the valid instances (when
    timed); `mask_mismatches`: tokens where the mask and `consume` disagreed."""

    source: str
    description: str
    status: str
    instances: list[InstanceResult]
    detail: str = ""
    keyword: str | None = None
    pointer: str | None = None
    ttfm_s: float | None = None
    mask_s: list[float] = field(default_factory=list)
    mask_mismatches: int = 0


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, cut to 200 characters."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def failed_case(case: PreparedCase, status: str, detail: str, keyword: str | None = None,
                pointer: str | None = None) -> CaseResult:
    """Every instance of `case` gets outcome `status` (refused, error or timeout)."""
    return CaseResult(case.source, case.description, status,
                      [InstanceResult(i.description, i.valid, status) for i in case.instances],
                      detail, keyword, pointer)


def _feed(engine: SchemaEngine, compiled: Any, ids: Sequence[int], time_masks: bool,
          result: CaseResult) -> bool:
    """Whether a fresh matcher consumes every id and ends accepting; with `time_masks`, the
    mask before each token and after the last is computed (timed) and checked against consume."""
    m = engine.matcher(compiled)
    for tok in ids:
        allowed = None
        if time_masks:
            t0 = time.perf_counter()
            mask = m.mask()
            result.mask_s.append(time.perf_counter() - t0)
            allowed = m.allows(mask, tok)
        consumed = m.consume(tok)
        if allowed is not None and allowed != consumed:
            result.mask_mismatches += 1
        if not consumed:
            return False
    if time_masks:
        t0 = time.perf_counter()
        m.mask()
        result.mask_s.append(time.perf_counter() - t0)
    return m.is_accepting()


def _combine(outcomes: list[str], valid: bool) -> str:
    """One instance's outcome from those of its spellings (see the module docstring)."""
    if "error" in outcomes:
        return "error"
    if "false_positive" in outcomes:
        return "false_positive"
    if valid and "pass" in outcomes:
        return "pass"
    if "untokenizable" in outcomes:
        return "untokenizable"
    return outcomes[0]


def run_case(engine: SchemaEngine, case: PreparedCase, *, time_masks: bool = False,
             on_compiled: Callable[[CaseResult], None] | None = None) -> CaseResult:
    """Compile `case.schema` once (to the first mask), then check every instance.

    `time_masks` times masks over the valid instances' tokens (benchmarks); `on_compiled` is
    called once the first mask exists (the benchmark's compile watchdog listens to it).
    """
    t0 = time.perf_counter()
    try:
        compiled = engine.compile(case.schema, format_assertion=case.format_assertion)
        engine.matcher(compiled).mask()
    except Refused as e:
        return failed_case(case, "refused", str(e).splitlines()[0][:300] if str(e) else "", e.keyword, e.pointer)
    except Exception as e:  # noqa: BLE001 - any other exception is an engine bug, recorded as such
        return failed_case(case, "error", one_line(e))
    result = CaseResult(case.source, case.description, "compiled", [], ttfm_s=time.perf_counter() - t0)
    if on_compiled is not None:
        on_compiled(result)
    for inst in case.instances:
        outcomes = []
        detail = ""
        for ids in inst.spellings:
            if ids is None:
                outcomes.append("untokenizable")
                continue
            try:
                accepted = _feed(engine, compiled, ids, time_masks and inst.valid, result)
            except Exception as e:  # noqa: BLE001 - a crash while matching is a bug too
                outcomes.append("error")
                detail = one_line(e)
                continue
            outcomes.append("pass" if accepted == inst.valid
                            else "false_positive" if accepted else "false_negative")
        result.instances.append(InstanceResult(inst.description, inst.valid, _combine(outcomes, inst.valid),
                                               detail))
    return result


def run_cases(engine: SchemaEngine, cases: Iterable[PreparedCase], *, time_masks: bool = False,
              progress: Callable[[int, CaseResult], None] | None = None) -> list[CaseResult]:
    """`run_case` over every case, in order."""
    out = []
    for k, case in enumerate(cases):
        out.append(run_case(engine, case, time_masks=time_masks))
        if progress is not None:
            progress(k, out[-1])
    return out


# ---------------------------------------------------------------------------
# Summaries and ratchet
# ---------------------------------------------------------------------------


def outcome_counts(results: Iterable[CaseResult]) -> Counter[str]:
    """Instance outcomes summed over `results`."""
    counts: Counter[str] = Counter()
    for r in results:
        counts.update(i.outcome for i in r.instances)
    return counts


def counts_by_source(results: Iterable[CaseResult]) -> dict[str, Counter[str]]:
    """Instance outcomes per suite file / MaskBench subset, in first-seen order."""
    out: dict[str, Counter[str]] = {}
    for r in results:
        out.setdefault(r.source, Counter()).update(i.outcome for i in r.instances)
    return out


def refusal_keywords(results: Iterable[CaseResult]) -> Counter[str]:
    """Refused schemas per keyword structgen named (``?`` when it named none)."""
    return Counter(r.keyword or "?" for r in results if r.status == "refused")


def failures(results: Iterable[CaseResult], outcomes: Sequence[str]) -> list[str]:
    """One line per instance with one of `outcomes`: where, what, why."""
    lines = []
    for r in results:
        for i in r.instances:
            if i.outcome in outcomes:
                why = i.detail or r.detail
                lines.append(f"{i.outcome}: {r.source} | {r.description} | {i.description}"
                             + (f" | {why}" if why else ""))
    return lines


# Ratcheted per suite file: pass (floor) and false_negative (ceiling); for the sample, ceilings:
SAMPLE_RATCHET_KEYS = ("false_negative", "refused")


def ratchet_regressions(ratchet: dict[str, Any], suite: dict[str, Counter[str]],
                        sample: Counter[str]) -> list[str]:
    """What fell behind the ratchet: a suite file with fewer passes or more false negatives,
    or a MaskBench sample with more valid instances rejected or refused."""
    bad = []
    for source, floor in ratchet.get("suite", {}).items():
        got = suite.get(source, Counter())
        if got["pass"] < floor.get("pass", 0):
            bad.append(f"{source}: {got['pass']} pass < ratchet {floor['pass']}")
        if "false_negative" in floor and got["false_negative"] > floor["false_negative"]:
            bad.append(f"{source}: {got['false_negative']} false_negative > ratchet {floor['false_negative']}")
    for key, ceiling in ratchet.get("maskbench_sample", {}).items():
        if sample[key] > ceiling:
            bad.append(f"MaskBench sample: {sample[key]} {key} > ratchet {ceiling}")
    return bad


def raised_ratchet(old: dict[str, Any], suite: dict[str, Counter[str]], sample: Counter[str],
                   reset: bool = False) -> dict[str, Any]:
    """The ratchet moved only towards better results (more passes, fewer failures); with
    `reset`, set to this run's figures (after the suite or the sample itself changed)."""
    new: dict[str, Any] = {"suite": {}, "maskbench_sample": {}}
    for source, counts in sorted(suite.items()):
        prev = {} if reset else old.get("suite", {}).get(source, {})
        new["suite"][source] = {
            "pass": max(counts["pass"], prev.get("pass", 0)),
            "false_negative": min(counts["false_negative"], prev.get("false_negative", counts["false_negative"])),
        }
    prev_sample = {} if reset else old.get("maskbench_sample", {})
    for key in SAMPLE_RATCHET_KEYS:
        new["maskbench_sample"][key] = min(sample[key], prev_sample.get(key, sample[key]))
    return new
