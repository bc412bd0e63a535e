"""Extract one document of examples/extraction/ into the object its JSON Schema describes.

The schema constrains every token, so the output always parses and validates when generation
finishes; `result.value` is the parsed object. The prompt is the one bench/extraction_bench.py
gives every engine.

    .venv/bin/python examples/extract.py                  # invoice_01
    .venv/bin/python examples/extract.py flight_02 --max-tokens 300
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import structgen

DATA = Path(__file__).resolve().parent / "extraction"
SYSTEM_PROMPT = (
    "You extract data from documents into JSON that follows the given JSON Schema. Copy names, "
    "numbers and phrases exactly as they are written in the document. Write dates as YYYY-MM-DD "
    "and times as HH:MM (24-hour)."
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("task", nargs="?", default="invoice_01",
                    help="a task id: " + ", ".join(sorted(p.stem for p in DATA.glob("*.json"))))
    ap.add_argument("--max-tokens", type=int, default=384)
    args = ap.parse_args()

    task = json.loads((DATA / f"{args.task}.json").read_text(encoding="utf-8"))
    schema_text = json.dumps(task["schema"], separators=(",", ":"), ensure_ascii=False)
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Document:\n{task['document']}\nJSON Schema:\n{schema_text}\n\n"
                                    "Return only the JSON object."},
    ]

    model = structgen.load_model()
    result = structgen.generate(model, messages, structgen.JsonSchema(task["schema"]),
                                max_tokens=args.max_tokens, temperature=0.0)

    print(task["document"])
    print(json.dumps(result.value, indent=2, ensure_ascii=False) if result.finished else
          f"(cut off after {args.max_tokens} tokens) {result.text}")
    stats = result.stats
    print(f"\n{result.finish_reason}: {stats.new_tokens} new tokens in {stats.seconds:.2f} s "
          f"({stats.tokens_per_s:.1f} tokens/s)")
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in stats.as_dict().items()})
    if result.finished:
        print("identical to the expected object" if result.value == task["expected"] else
              f"expected:\n{json.dumps(task['expected'], ensure_ascii=False)}")


if __name__ == "__main__":
    main()
