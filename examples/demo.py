"""The demo `make demo` runs on the embedded default model: JSON extraction with a JSON Schema
(speculative decoding), then regex- and grammar-constrained generation.

Every extracted object is validated with jsonschema, every regex output checked with
`re.fullmatch`, every grammar output parsed (json.loads for JSON, Lark's Earley parser for the
others); timings show where the time goes.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import jsonschema
import lark

import structgen
from extract import DATA, SYSTEM_PROMPT

TASKS = [
    ("US phone number", r"\(\d{3}\) \d{3}-\d{4}",
     "Write a US phone number for the front desk of a hotel."),
    ("ISO date", r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])",
     "On what date did Apollo 11 land on the Moon? Answer with a date."),
    ("product code", r"[A-Z]{3}-\d{4}-[A-Z0-9]{2}",
     "Invent a product code for a blue kettle, like ABC-1234-X9."),
    ("email", r"[a-z]+\.[a-z]+@[a-z]+\.(com|org|net)",
     "Give the email address of Jane Doe who works at Acme."),
    ("yes/no", r"(yes|no)", "Is the Pacific the largest ocean on Earth? Answer yes or no."),
    ("Unicode", r"(café|thé|chocolat chaud) (au lait|noir|glacé)",
     "Que voulez-vous boire ce matin ?"),
]


GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
GRAMMAR_TASKS = [
    ("JSON", "json.lark", "Describe a cat named Tom as a JSON object with name, age and color.", 60),
    ("arithmetic", "arithmetic.lark", "Write an arithmetic expression that equals 42.", 24),
    ("SQL", "sqlite_select.lark", "Write an SQL query selecting the names of users older than 30.", 40),
]


EXTRACTION_TASKS = ["contact_01", "invoice_01"]


def extraction(model: structgen.LoadedModel) -> None:
    """Document + schema in, validated object out (examples/extraction/, like examples/extract.py)."""
    for task_id in EXTRACTION_TASKS:
        task = json.loads((DATA / f"{task_id}.json").read_text(encoding="utf-8"))
        schema_text = json.dumps(task["schema"], separators=(",", ":"), ensure_ascii=False)
        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": f"Document:\n{task['document']}\nJSON Schema:\n"
                                                f"{schema_text}\n\nReturn only the JSON object."}]
        result = structgen.generate(model, messages, structgen.JsonSchema(task["schema"]),
                                    max_tokens=200)
        if not result.finished:
            raise SystemExit(f"demo failed: {task_id} did not finish: {result.text!r}")
        jsonschema.validate(result.value, task["schema"],
                            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        s = result.stats
        drafted, accepted = sum(s.drafted.values()), sum(s.accepted.values())
        print(f"{task_id}: {s.new_tokens} tokens in {s.seconds:.1f} s ({s.tokens_per_s:.1f} tok/s, "
              f"{s.forward_passes} forward passes, {accepted}/{drafted} drafted tokens accepted), "
              f"valid:\n  {json.dumps(result.value, ensure_ascii=False)}")
    print()


def main() -> None:
    t = time.perf_counter()
    model = structgen.load_model()
    print(f"model: {model.name} ({model.vocab.width} tokens), loaded in {time.perf_counter() - t:.1f} s\n")
    extraction(model)
    print(f"{'task':<16} {'output':<36} {'match':<6} {'tokens':>6} {'tok/s':>7} {'mask ms':>8}")
    for name, pattern, question in TASKS:
        t = time.perf_counter()
        constraint = structgen.Regex(pattern)
        compile_ms = (time.perf_counter() - t) * 1e3
        result = structgen.generate(model, [{"role": "user", "content": question}], constraint,
                                    max_tokens=40)
        ok = result.finished and re.fullmatch(pattern, result.text) is not None
        s = result.stats
        print(f"{name:<16} {result.text!r:<36} {str(ok):<6} {s.new_tokens:>6} "
              f"{s.tokens_per_s:>7.1f} {s.mask_seconds * 1e3:>8.2f}   (regex compiled in {compile_ms:.1f} ms)")
        if not ok:
            raise SystemExit(f"demo failed: {name} produced {result.text!r}")

    print(f"\n{'grammar':<12} {'finish':<9} {'tokens':>6} {'tok/s':>7} {'mask ms':>8}  output")
    for name, filename, question, budget in GRAMMAR_TASKS:
        text = (GRAMMARS / filename).read_text()
        constraint = structgen.Grammar(text)
        result = structgen.generate(model, [{"role": "user", "content": question}], constraint,
                                    max_tokens=budget)
        if not result.finished:
            raise SystemExit(f"demo failed: {name} did not finish: {result.text!r}")
        lark.Lark(text, parser="earley", lexer="dynamic_complete").parse(result.text)
        if filename == "json.lark":
            json.loads(result.text)
        s = result.stats
        print(f"{name:<12} {result.finish_reason:<9} {s.new_tokens:>6} {s.tokens_per_s:>7.1f} "
              f"{s.mask_seconds * 1e3:>8.1f}  {result.text.strip()!r}")
    print(f"\nevery output valid (budgets: {', '.join(str(t[3]) for t in GRAMMAR_TASKS)} tokens)")


if __name__ == "__main__":
    main()
