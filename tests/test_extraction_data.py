"""The JSON-extraction dataset (examples/extraction/) is well formed: a benchmark that scores field
accuracy against `expected` is only meaningful if every expected object is itself valid and
obtainable from its document. Fast: no model."""
from __future__ import annotations

import json
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
