"""The JSON-extraction dataset (examples/extraction/) is well formed: a benchmark that scores field
accuracy against `expected` is only meaningful if every expected object is itself valid and
obtainable from its document. Fast: no model."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from jsonschema import Draft202012Validator, FormatChecker

DATA = Path(__file__).resolve().parent.parent / "examples" / "extraction"
TASKS = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DATA.glob("*.json"))]
IDS = [t["id"] for t in TASKS]


def verbatim_strings(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for each expected string the model must copy from the document: every
    string leaf whose schema names no `enum`, `const` or `format` (those are normalised values,
    e.g. ISO dates written differently in the text)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from verbatim_strings(schema.get("properties", {}).get(key, {}), item, f"{path}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from verbatim_strings(schema.get("items", {}), item, f"{path}/{i}")
    elif isinstance(value, str) and not {"enum", "const", "format"} & schema.keys():
        yield path, value


def test_enough_tasks_with_unique_ids() -> None:
    assert len(TASKS) >= 24
    assert len(set(IDS)) == len(IDS)
    assert len({t["kind"] for t in TASKS}) >= 10


@pytest.mark.parametrize("path", sorted(DATA.glob("*.json")), ids=lambda p: p.stem)
def test_file_named_after_its_id(path: Path) -> None:
    task = json.loads(path.read_text(encoding="utf-8"))
    assert set(task) == {"id", "kind", "document", "schema", "expected"}
    assert task["id"] == path.stem


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_schema_is_valid_draft_2020_12(task: dict[str, Any]) -> None:
    schema = task["schema"]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_expected_validates(task: dict[str, Any]) -> None:
    validator = Draft202012Validator(task["schema"], format_checker=FormatChecker())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(task["expected"])]
    assert not errors


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_document_length(task: dict[str, Any]) -> None:
    assert 80 <= len(task["document"].split()) <= 300


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_copied_strings_occur_in_document(task: dict[str, Any]) -> None:
    strings = list(verbatim_strings(task["schema"], task["expected"]))
    assert strings, "an extraction task should copy at least one string"
    missing = [(path, s) for path, s in strings if s not in task["document"]]
    assert not missing


def test_verbatim_rule_skips_normalised_values() -> None:
    """The rule itself: enum, format and non-string leaves are not required verbatim."""
    schema = {"properties": {"d": {"type": "string", "format": "date"}, "e": {"enum": ["a"]},
                             "s": {"type": "string"}, "xs": {"items": {"type": "string"}}}}
    value = {"d": "2024-01-01", "e": "a", "s": "copied", "n": 3, "xs": ["p", "q"]}
    assert list(verbatim_strings(schema, value)) == [("/s", "copied"), ("/xs/0", "p"), ("/xs/1", "q")]


# The benchmark's scoring (bench/extraction_bench.py), on the dataset and on hand-made outputs.
# Imported by a fixture so that the data checks above do not depend on structgen importing.
@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(DATA.parent.parent / "bench"))
    import extraction_bench

    return extraction_bench


def test_bench_loads_the_same_tasks(bench: Any) -> None:
    assert [t["id"] for t in bench.load_tasks()] == IDS
    assert [t["id"] for t in bench.load_tasks(["job_02", "flight_01"])] == ["job_02", "flight_01"]
    assert len(bench.load_tasks(limit=2)) == 2


@pytest.mark.parametrize("task", TASKS, ids=IDS)
def test_expected_scores_full_marks(bench: Any, task: dict[str, Any]) -> None:
    compact = json.dumps(task["expected"], separators=(",", ":"), ensure_ascii=False)
    assert bench.parse_json(compact) == task["expected"]
    assert bench.field_accuracy(task["expected"], bench.parse_json(compact)) == 1.0


def test_field_accuracy_counts_leaves(bench: Any) -> None:
    expected = {"name": "Harbor Lane Printing Co.", "total": 425, "paid": True,
                "items": [{"qty": 2}, {"qty": 3}], "note": None}
    assert bench.field_accuracy(expected, {**expected, "name": "  harbor lane\nprinting CO. ", "total": 425.0}) == 1.0
    assert bench.field_accuracy(expected, {**expected, "paid": 1}) == 5 / 6  # a bool is not a number
    assert bench.field_accuracy(expected, {**expected, "items": [{"qty": 3}, {"qty": 2}]}) == 4 / 6  # order counts
    assert bench.field_accuracy(expected, {**expected, "items": [{"qty": 2}]}) == 5 / 6
    assert bench.field_accuracy(expected, {"name": "Harbor Lane"}) == 0.0
    assert bench.field_accuracy(expected, None) == 0.0


def test_parse_json_removes_only_a_fence(bench: Any) -> None:
    assert bench.parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert bench.parse_json('  {"a": [1, 2]}\n') == {"a": [1, 2]}
    assert bench.parse_json('Here it is: {"a": 1}') is None
    assert bench.parse_json('{"a": 1') is None


def test_prompt_has_document_schema_and_instruction(bench: Any) -> None:
    task = TASKS[0]
    system, user = bench.chat_messages(task)
    assert system["role"] == "system" and user["role"] == "user"
    assert task["document"] in user["content"]
    assert json.dumps(task["schema"], separators=(",", ":"), ensure_ascii=False) in user["content"]
    assert user["content"].endswith("Return only the JSON object.")
