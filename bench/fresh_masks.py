"""Fresh-mask cost of grammar automata: masks of states never seen before, CPU time per mask.

Each document gets a new `GrammarAutomaton` (per-state caches empty; caches keyed by terminal
DFA or vocabulary, such as the per-lexeme splits and the vocabulary's views, stay warm as they
would in a long-running process), and the
mask is computed before every token of its tokenization. This isolates the engine's work on new
states, which `grammar_bench.py` mixes with compile time and cached masks. Used for the A/B
figures in docs/benchmarks.md ("Since this run"): run it on two checkouts, alternating
(`PYTHONPATH=<other checkout> python bench/fresh_masks.py` runs this script on its package).

    python bench/fresh_masks.py                       # SmolLM2: JSON, C-like, Python, SQL
    python bench/fresh_masks.py --model gemma-3-270m --grammars json
    python bench/fresh_masks.py --repeat 3            # more documents: GC collections and pauses
"""
from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np

import structgen
from structgen.constraints.grammar import GrammarAutomaton

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
JSON_DOCS = [
    {"invoice": "INV-2024-0042", "date": "2024-03-15",
     "customer": {"name": "Acme Corp", "email": "billing@acme.example", "vat": "DE123456789"},
     "items": [{"sku": "A-100", "description": "Widget, large", "qty": 3, "price": 19.99},
               {"sku": "B-7", "description": "Gadget", "qty": 1, "price": 250.0}],
     "total": 309.97, "paid": False, "notes": None},
    {"name": "Jane Doe", "title": "Senior Engineer", "phones": ["+1 555 0100", "+1 555 0199"],
     "address": {"street": "12 Main St", "city": "Springfield", "zip": "12345"},
     "tags": ["vip", "early-adopter"], "score": -12.5e3},
]
SENTENCES = {
    "c_like": ["int f(int x) { if (x > 0) { return x * 2 + y; } while (i < 10) i = i + 1; }"],
    "python_expr": ["sorted(d.keys(), key=lambda k: -k)[0] + [x ** 2, y % 2 == 0] if flag else {\"a\": (1, 2.5)}"],
    "sqlite_select": ["SELECT T1.name, COUNT(*) AS n FROM singer AS T1 JOIN concert AS T2 "
                      "ON T1.id = T2.singer_id WHERE T2.year > 2014 AND T1.country IN "
                      "('France', 'Japan') GROUP BY T1.name HAVING n >= 2 ORDER BY n DESC LIMIT 5;"],
}


def texts(grammar: str) -> list[str]:
    if grammar == "json":  # compact and json.dumps spacing, twice (the second pass: warm splits)
        return [json.dumps(d, separators=sep) for _ in range(2) for d in JSON_DOCS
                for sep in ((",", ":"), (", ", ": "))]
    return SENTENCES[grammar]


def measure(model: structgen.LoadedModel, grammar: str, repeat: int = 1) -> np.ndarray:
    compiled = structgen.Grammar((GRAMMARS / f"{grammar}.lark").read_text()).compiled
    times = []
    for text in texts(grammar) * repeat:
        automaton = GrammarAutomaton(compiled, model.vocab)
        state = automaton.start
        for token in model.tokenizer.encode(text, add_special_tokens=False):
            t = time.process_time()
            automaton.mask(state)
            times.append(time.process_time() - t)
            state = automaton.advance(state, token)
            if state is None:
                raise SystemExit(f"{grammar}: the grammar rejects {text!r}")
    return np.array(times) * 1e3


class GCStats:
    """Cyclic-GC collections per generation and their CPU time (`gc.callbacks`): a full
    collection re-traverses the whole heap, so it shows as a fresh-mask tail."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.process_time()
        else:
            self.count[info["generation"]] += 1
            self.seconds[info["generation"]] += time.process_time() - self._t0

    def __enter__(self) -> "GCStats":
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="structgen.load_model name or path")
    ap.add_argument("--grammars", default="json,c_like,python_expr,sqlite_select")
    ap.add_argument("--repeat", type=int, default=1,
                    help="documents per text (each a new automaton: more masks for GC figures)")
    ap.add_argument("--freeze", action="store_true",
                    help="gc.freeze() after loading the model, as an application may: full "
                         "collections then skip the model's objects")
    args = ap.parse_args()
    model = structgen.load_model(args.model, progress=False)
    if args.freeze:
        gc.collect()
        gc.freeze()
    print(f"{model.name} ({model.vocab.width} tokens), CPU ms per fresh mask")
    print("| grammar | masks | mean | p50 | p90 | p99 | max | GC gen0/1/2 | GC gen2 s | GC s |\n"
          "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for grammar in args.grammars.split(","):
        with GCStats() as stats:
            ms = measure(model, grammar, args.repeat)
        print(f"| {grammar} | {len(ms)} | {ms.mean():.2f} | {np.median(ms):.2f} | "
              f"{np.percentile(ms, 90):.2f} | {np.percentile(ms, 99):.2f} | {ms.max():.1f} | "
              f"{'/'.join(map(str, stats.count))} | {stats.seconds[2]:.2f} | "
              f"{sum(stats.seconds):.2f} |", flush=True)


if __name__ == "__main__":
    main()
