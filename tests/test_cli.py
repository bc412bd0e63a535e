"""The command line: output, JSON mode, exit statuses (0 finished, 2 error, 3 cut off)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from structgen.cli import main

pytestmark = pytest.mark.model
GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def test_regex_json_output(smollm2, capsys) -> None:
    code = main(["regex", r"\d{3}-\d{4}", "--prompt", "Call 555-", "--max-tokens", "12", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["finished"]
    assert re.fullmatch(r"\d{3}-\d{4}", out["text"])
    assert out["stats"]["new_tokens"] == len(out["tokens"])


def test_regex_cut_off_exits_3(smollm2, capsys) -> None:
    code = main(["regex", r"[a-z]{30,40}", "--prompt", "Spell: ", "--max-tokens", "2"])
    captured = capsys.readouterr()
    assert code == 3
    assert "incomplete" in captured.err
    assert re.fullmatch(r"[a-z]*", captured.out.strip())


def test_bad_regex_exits_2(capsys) -> None:
    assert main(["regex", r"(a)\1", "--prompt", "x"]) == 2
    assert "backreference" in capsys.readouterr().err


def test_grammar_command(smollm2, capsys) -> None:
    code = main(["grammar", str(GRAMMARS / "arithmetic.lark"), "--chat", "--prompt",
                 "Write 2 plus 3 as an arithmetic expression.", "--max-tokens", "12", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["finished"]
    import lark

    lark.Lark((GRAMMARS / "arithmetic.lark").read_text(), parser="earley",
              lexer="dynamic_complete").parse(out["text"])


def test_gbnf_file(tmp_path, smollm2, capsys) -> None:
    path = tmp_path / "answer.gbnf"
    path.write_text('root ::= "answer: " ("yes" | "no")\n')
    assert main(["grammar", str(path), "--prompt", "Q: is ice cold? ", "--max-tokens", "8"]) == 0
    assert capsys.readouterr().out.strip() in ("answer: yes", "answer: no")


def test_bad_grammar_file_exits_2(tmp_path, capsys) -> None:
    path = tmp_path / "bad.lark"
    path.write_text("start: (\n")
    assert main(["grammar", str(path), "--prompt", "x"]) == 2
    assert "line" in capsys.readouterr().err
    assert main(["grammar", str(tmp_path / "missing.lark"), "--prompt", "x"]) == 2


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120}}}


def test_json_command_prints_the_parsed_value(tmp_path, smollm2, capsys) -> None:
    import jsonschema

    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON))
    code = main(["json", "--schema", str(path), "--chat", "--prompt",
                 "Give a JSON object for Ada Lovelace, age 36.", "--max-tokens", "40", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["finished"]
    assert out["value"] == json.loads(out["text"])
    jsonschema.validate(out["value"], PERSON)


def test_json_command_errors_name_the_keyword(tmp_path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "strin"}}}))
    assert main(["json", "--schema", str(path), "--prompt", "x"]) == 2
    assert "/properties/a" in capsys.readouterr().err
    path.write_text("{not json")
    assert main(["json", "--schema", str(path), "--prompt", "x"]) == 2
    assert main(["json", "--schema", str(tmp_path / "missing.json"), "--prompt", "x"]) == 2


def test_no_speculative_gives_the_same_output(smollm2, capsys) -> None:
    args = ["regex", r"[a-z]+( [a-z]+){3}", "--chat", "--prompt", "Name four fruits, lowercase.",
            "--max-tokens", "16", "--json"]
    assert main(args) == 0
    fast = json.loads(capsys.readouterr().out)
    assert main(args + ["--no-speculative"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert fast["tokens"] == plain["tokens"]
    assert "drafted" in fast["stats"]
