"""JSON-extraction benchmark: end-to-end structured generation, structgen next to Hugging Face.

Every task of ``examples/extraction/`` (a document, its JSON Schema, the expected object) is run
with greedy decoding on the same model, the same prompt token ids and the same token cap by each
engine. Engines are interleaved task by task, in reverse order on every other task, so that load
on the machine and structgen's process-wide caches (pieces compiled for one engine's constraint
are found ready by the next) favour none of them:

* ``hf``: ``model.generate`` unconstrained; the output is ``json.loads``-ed (a surrounding
  markdown code fence is removed first, nothing else is repaired);
* ``hf-xgrammar``: ``model.generate`` with xgrammar's Hugging Face logits processor
  (``xgrammar.contrib.hf.LogitsProcessor``, a new one per call) on the schema compiled by
  ``GrammarCompiler.compile_json_schema`` in compact layout (``any_whitespace=False``,
  separators ``,`` and ``:``), the layout of structgen's ``JsonSchema(whitespace="compact")``, so
  that both constrained engines write the same bytes for the same object;
* ``structgen``: ``structgen.generate`` without speculation (``speculative=False`` where
  ``generate`` has that argument);
* ``structgen-spec``: ``structgen.generate(..., speculative=True)``; skipped, and said so, when
  ``generate`` has no ``speculative`` argument.

The structgen constraint is ``structgen.JsonSchema(schema, whitespace="compact")``; where this structgen has no
``JsonSchema`` the benchmark says so and uses ``Grammar(grammars/json.lark)`` (any JSON) instead,
labelled ``[json.lark]`` in every table. Each engine compiles its own constraint (so no engine
inherits another's warmed mask caches); compile time (to a ready constraint, for structgen the
token automaton before its first mask) is reported apart from generation time.

Per engine: outputs valid (parse and validate against the schema, formats checked) and finished
(ended by EOS or a complete constraint, not by the cap); field accuracy (expected and output are
flattened to leaf paths; a leaf matches when strings agree after case folding and whitespace
collapsing, numbers are numerically equal, booleans and null are equal; the score is the
fraction of expected leaves matched, 0 for an unparsable output); seconds per object (wall time
of the generate call: prefill plus decoding); tokens/s (all new tokens over all generation
seconds; EOS not counted). Markdown tables go to stdout, progress to stderr.

Usage::

    .venv/bin/python bench/extraction_bench.py [--limit N] [--tasks id,...] [--max-tokens 384]
        [--engines hf,hf-xgrammar,structgen,structgen-spec] [--threads N] [--json out.json]
        [--plot docs/img/extraction_bench.png]
"""
from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from jsonschema import Draft202012Validator, FormatChecker

import structgen

try:
    from structgen.constraints.base import forget_shared
except ImportError:  # a structgen from before constraints were shared (A/B runs)
    def forget_shared() -> None:
        pass

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "extraction"
JSON_GRAMMAR = ROOT / "grammars" / "json.lark"
ENGINES = ["hf", "hf-xgrammar", "structgen", "structgen-spec"]
SYSTEM_PROMPT = (
    "You extract data from documents into JSON that follows the given JSON Schema. Copy names, "
    "numbers and phrases exactly as they are written in the document. Write dates as YYYY-MM-DD "
    "and times as HH:MM (24-hour)."
)


def load_tasks(names: list[str] | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """The dataset, in file-name order; `names` selects tasks by id (unknown ids are an error)."""
    tasks = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(DATA.glob("*.json"))]
    if names:
        by_id = {t["id"]: t for t in tasks}
        unknown = [n for n in names if n not in by_id]
        if unknown:
            raise SystemExit(f"unknown task ids: {', '.join(unknown)}")
        tasks = [by_id[n] for n in names]
    return tasks[:limit] if limit > 0 else tasks


def chat_messages(task: dict[str, Any]) -> list[dict[str, str]]:
    """The one prompt every engine gets: system prompt, document, compact schema, instruction."""
    schema = json.dumps(task["schema"], separators=(",", ":"), ensure_ascii=False)
    user = f"Document:\n{task['document']}\nJSON Schema:\n{schema}\n\nReturn only the JSON object."
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of the chat prompt, built the way `structgen.generate` builds them."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(tokenizer.encode(text, add_special_tokens=False))


# --------------------------------------------------------------------------- scoring

def parse_json(text: str) -> Any:
    """The JSON value of an output, or None. Only a markdown code fence around it is removed."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0] if body.rstrip().endswith("```") else body
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs; empty arrays and objects are leaves themselves."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, f"{path}/{key}")
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}/{i}")
    else:
        yield path, value


def same_leaf(expected: Any, got: Any) -> bool:
    """Strings equal up to case and whitespace, numbers numerically, everything else exactly."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return float(expected) == float(got)
    if isinstance(expected, str) and isinstance(got, str):
        return " ".join(expected.split()).casefold() == " ".join(got.split()).casefold()
    return expected == got


def field_accuracy(expected: Any, got: Any) -> float:
    """Fraction of the expected leaf paths whose value the output has at the same path."""
    want = dict(leaves(expected))
    have = dict(leaves(got)) if got is not None else {}
    return sum(p in have and same_leaf(v, have[p]) for p, v in want.items()) / len(want)


# --------------------------------------------------------------------------- engines

@dataclass
class Outcome:
    """One engine on one task."""

    task: str
    engine: str
    text: str = ""
    tokens: list[int] = field(default_factory=list)
    new_tokens: int = 0
    seconds: float = 0.0
    compile_seconds: float = 0.0
    finished: bool = False
    finish_reason: str = ""
    valid: bool = False
    accuracy: float = 0.0
    error: str = ""
    stats: dict[str, Any] = field(default_factory=dict)


Runner = Callable[[dict[str, Any], list[dict[str, str]], list[int], Outcome], None]


class Engines:
    """Builds one runner per requested engine; says which ran and which were skipped, and why."""

    def __init__(self, lm: Any, max_tokens: int, requested: list[str]) -> None:
        self.lm = lm
        self.max_tokens = max_tokens
        self.eos_ids = sorted(lm.vocab.eos_ids)
        self.notes: list[str] = []
        self.has_json_schema = hasattr(structgen, "JsonSchema")
        self.has_speculative = "speculative" in inspect.signature(structgen.generate).parameters
        self.constraint_label = "JsonSchema" if self.has_json_schema else "Grammar(json.lark)"
        if not self.has_json_schema:
            self.notes.append("structgen has no JsonSchema: structgen engines use the stand-in "
                              "Grammar(grammars/json.lark), which accepts any JSON, not the schema")
        self.runners: dict[str, Runner] = {}
        for name in requested:
            runner = self._make(name)
            if runner is not None:
                self.runners[name] = runner

    def label(self, name: str) -> str:
        """Engine name as printed: structgen engines carry the stand-in constraint's name."""
        return f"{name} [json.lark]" if name.startswith("structgen") and not self.has_json_schema else name

    def _make(self, name: str) -> Runner | None:
        if name == "hf":
            return self._hf(None)
        if name == "hf-xgrammar":
            try:
                import xgrammar
                from xgrammar.contrib.hf import LogitsProcessor
            except ImportError as e:
                self.notes.append(f"hf-xgrammar skipped: xgrammar does not import ({e})")
                return None
            t = time.perf_counter()
            info = xgrammar.TokenizerInfo.from_huggingface(
                self.lm.tokenizer, vocab_size=self.lm.model.config.vocab_size, stop_token_ids=self.eos_ids)
            compiler = xgrammar.GrammarCompiler(info)
            self.notes.append(f"hf-xgrammar: tokenizer info and compiler set up in "
                              f"{time.perf_counter() - t:.2f} s (once, not in per-task compile)")
            return self._hf((compiler, LogitsProcessor))
        if name == "structgen":
            return self._structgen({"speculative": False} if self.has_speculative else {})
        if name == "structgen-spec":
            if not self.has_speculative:
                self.notes.append("structgen-spec skipped: structgen.generate has no `speculative` argument")
                return None
            return self._structgen({"speculative": True})
        raise SystemExit(f"unknown engine {name!r} (known: {', '.join(ENGINES)})")

    def _hf(self, xgr: tuple[Any, Any] | None) -> Runner:
        from transformers import GenerationConfig, LogitsProcessorList

        config = GenerationConfig(max_new_tokens=self.max_tokens, do_sample=False,
                                  eos_token_id=self.eos_ids, pad_token_id=self.eos_ids[0])

        def run(task: dict[str, Any], messages: list[dict[str, str]], ids: list[int], out: Outcome) -> None:
            processors = None
            if xgr is not None:
                compiler, processor_class = xgr
                t = time.perf_counter()
                compiled = compiler.compile_json_schema(json.dumps(task["schema"]), any_whitespace=False,
                                                        separators=(",", ":"))
                out.compile_seconds = time.perf_counter() - t
                processors = LogitsProcessorList([processor_class(compiled)])
            input_ids = torch.tensor([ids], device=self.lm.model.device)
            t = time.perf_counter()
            with torch.inference_mode():
                generated = self.lm.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                                   generation_config=config, logits_processor=processors)
            out.seconds = time.perf_counter() - t
            new = generated[0, len(ids):].tolist()
            out.finished = bool(new) and new[-1] in self.eos_ids
            out.finish_reason = "eos" if out.finished else "max_tokens"
            out.tokens = new[:-1] if out.finished else new
            out.text = self.lm.vocab.decode(out.tokens).decode("utf-8", errors="replace")

        return run

    def _structgen(self, kwargs: dict[str, Any]) -> Runner:
        grammar_text = JSON_GRAMMAR.read_text(encoding="utf-8")

        def run(task: dict[str, Any], messages: list[dict[str, str]], ids: list[int], out: Outcome) -> None:
            forget_shared()  # each structgen variant compiles the task's schema cold
            t = time.perf_counter()
            constraint = (structgen.JsonSchema(task["schema"], whitespace="compact") if self.has_json_schema
                          else structgen.Grammar(grammar_text))
            constraint.compile(self.lm.vocab)
            out.compile_seconds = time.perf_counter() - t
            t = time.perf_counter()
            result = structgen.generate(self.lm, messages, constraint, max_tokens=self.max_tokens,
                                        temperature=0.0, **kwargs)
            out.seconds = time.perf_counter() - t
            if result.stats.prompt_tokens != len(ids):
                raise RuntimeError(f"structgen saw {result.stats.prompt_tokens} prompt tokens, "
                                   f"the HF engines {len(ids)}: prompts differ")
            out.tokens, out.text = list(result.tokens), result.text
            out.finished, out.finish_reason = result.finished, result.finish_reason
            out.stats = result.stats.as_dict()

        return run

    def run(self, name: str, task: dict[str, Any], messages: list[dict[str, str]], ids: list[int]) -> Outcome:
        """Run one engine on one task and score it; an engine error is recorded, not raised."""
        out = Outcome(task["id"], name)
        try:
            self.runners[name](task, messages, ids, out)
        except Exception as e:  # noqa: BLE001 — a refused schema or a crash is a result to report
            out.error = f"{type(e).__name__}: {e}"
            return out
        out.new_tokens = len(out.tokens)
        value = parse_json(out.text)
        validator = Draft202012Validator(task["schema"], format_checker=FormatChecker())
        out.valid = value is not None and validator.is_valid(value)
        out.accuracy = field_accuracy(task["expected"], value)
        return out


def warm_up(lm: Any) -> float:
    """One short generation each way, so first-call costs (threads, kernels) are not timed; the
    structgen one is masked by an unrelated regex, building structgen's per-vocabulary tables
    (what xgrammar's TokenizerInfo is to xgrammar). Returns the seconds that took."""
    ids = torch.tensor([lm.tokenizer.encode("Hello")], device=lm.model.device)
    with torch.inference_mode():
        lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
                          pad_token_id=lm.tokenizer.eos_token_id)
    t = time.perf_counter()
    structgen.generate(lm, "Hello", structgen.Regex("[a-z ]{1,12}"), max_tokens=4)
    return time.perf_counter() - t


# --------------------------------------------------------------------------- reporting

def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """Aggregates for one engine."""
    ran = [o for o in outcomes if not o.error]
    seconds = [o.seconds for o in ran]
    total_s = sum(seconds)
    return {
        "objects": len(outcomes),
        "errors": len(outcomes) - len(ran),
        "valid_finished": sum(o.valid and o.finished for o in outcomes),
        "valid": sum(o.valid for o in outcomes),
        "finished": sum(o.finished for o in outcomes),
        "field_accuracy": statistics.fmean(o.accuracy for o in outcomes) if outcomes else 0.0,
        "seconds_median": statistics.median(seconds) if seconds else 0.0,
        "seconds_mean": statistics.fmean(seconds) if seconds else 0.0,
        "new_tokens": sum(o.new_tokens for o in ran),
        "tokens_per_s": sum(o.new_tokens for o in ran) / total_s if total_s > 0 else 0.0,
        "compile_ms_median": 1000 * statistics.median(o.compile_seconds for o in ran) if ran else 0.0,
    }


def markdown(summary: dict[str, dict[str, Any]], engines: Engines, outcomes: list[Outcome],
             tasks: list[dict[str, Any]]) -> str:
    """Summary table, speed ratios, and one row per task."""
    lines = ["| engine | valid & finished | field accuracy | s/object (median) | s/object (mean) | "
             "tokens/s | new tokens | compile ms (median) | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        compile_ms = f"{s['compile_ms_median']:.1f}" if name != "hf" else "—"
        lines.append(f"| {engines.label(name)} | {s['valid_finished']}/{s['objects']} | "
                     f"{100 * s['field_accuracy']:.1f}% | {s['seconds_median']:.2f} | {s['seconds_mean']:.2f} | "
                     f"{s['tokens_per_s']:.1f} | {s['new_tokens']} | {compile_ms} | {s['errors']} |")
    lines.append("")
    spec = summary.get("structgen-spec")
    for base in ("hf", "hf-xgrammar", "structgen"):
        if spec and base in summary and summary[base]["tokens_per_s"] > 0 and spec["seconds_mean"] > 0:
            lines.append(f"- {engines.label('structgen-spec')} vs {engines.label(base)}: "
                         f"{spec['tokens_per_s'] / summary[base]['tokens_per_s']:.2f}× tokens/s, "
                         f"{summary[base]['seconds_mean'] / spec['seconds_mean']:.2f}× faster per object (mean)")
    if "structgen" in summary and spec:
        plain = {o.task: o.tokens for o in outcomes if o.engine == "structgen" and not o.error}
        both = [o for o in outcomes if o.engine == "structgen-spec" and o.task in plain and not o.error]
        same = sum(o.tokens == plain[o.task] for o in both)
        lines.append(f"- greedy outputs token-identical, structgen vs structgen-spec: {same}/{len(both)}")
    lines += ["", "| task | kind | " + " | ".join(engines.label(n) for n in summary) + " |",
              "|---|---|" + "---|" * len(summary)]
    cell = {(o.task, o.engine): o for o in outcomes}
    for task in tasks:
        cells = []
        for name in summary:
            o = cell[(task["id"], name)]
            cells.append("error" if o.error else
                         f"{'✓' if o.valid and o.finished else '✗'} {100 * o.accuracy:.0f}% "
                         f"{o.new_tokens / o.seconds if o.seconds else 0:.1f} tok/s")
        lines.append(f"| {task['id']} | {task['kind']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, Any]], engines: Engines, path: str) -> None:
    """Tokens/s, seconds per object and valid & finished outputs, one bar per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    labels = [engines.label(n).replace(" [", "\n[") for n in names]
    palette = {"hf": "#8c8c8c", "hf-xgrammar": "#d98c3f", "structgen": "#4c72b0", "structgen-spec": "#2a9d5c"}
    colors = [palette[n] for n in names]
    panels = [("tokens/s (higher is better)", [summary[n]["tokens_per_s"] for n in names], "{:.1f}"),
              ("seconds per object, median", [summary[n]["seconds_median"] for n in names], "{:.2f}"),
              ("valid & finished outputs (%)",
               [100 * summary[n]["valid_finished"] / max(summary[n]["objects"], 1) for n in names], "{:.0f}")]
    fig, axes = plt.subplots(1, 3, figsize=(4 * len(panels) + 1, 4))
    for ax, (title, values, fmt) in zip(axes, panels):
        bars = ax.bar(labels, values, color=colors)
        ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=7)
    n = next(iter(summary.values()))["objects"]
    fig.suptitle(f"JSON extraction: {n} documents, greedy, {engines.lm.name} "
                 f"({engines.lm.model.device.type})", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="first N tasks only (0: all)")
    ap.add_argument("--tasks", default=None, help="comma list of task ids")
    ap.add_argument("--max-tokens", type=int, default=384, help="new-token cap for every engine")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma list of: " + ",".join(ENGINES))
    ap.add_argument("--model", default=None, help="structgen.load_model name or path (default SmolLM2)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0: torch's default; 1 is much faster on a busy machine)")
    ap.add_argument("--json", default=None, help="write every output and the summary here")
    ap.add_argument("--plot", default=None, help="write a PNG plot here")
    args = ap.parse_args(argv)

    tasks = load_tasks(args.tasks.split(",") if args.tasks else None, args.limit)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    lm = structgen.load_model(args.model, progress=False)
    engines = Engines(lm, args.max_tokens, [e.strip() for e in args.engines.split(",") if e.strip()])
    if not engines.runners:
        raise SystemExit("no engine can run")
    engines.notes.append(f"structgen: per-vocabulary tables built by a warm-up generation in {warm_up(lm):.2f} s "
                         "(once, not in per-task compile)")
    for note in engines.notes:
        print(f"note: {note}", file=sys.stderr)

    outcomes: list[Outcome] = []
    for i, task in enumerate(tasks, 1):
        messages = chat_messages(task)
        ids = prompt_ids(lm.tokenizer, messages)
        order = list(engines.runners)
        for name in order if i % 2 else order[::-1]:
            o = engines.run(name, task, messages, ids)
            outcomes.append(o)
            status = (f"error {o.error}" if o.error else
                      f"{o.new_tokens} tok {o.seconds:.1f} s {o.new_tokens / o.seconds if o.seconds else 0:.1f} tok/s "
                      f"{o.finish_reason} valid={o.valid} acc={o.accuracy:.2f}")
            print(f"[{i}/{len(tasks)}] {task['id']} ({len(ids)} prompt tok) {engines.label(name)}: {status}",
                  file=sys.stderr, flush=True)

    summary = {n: summarize([o for o in outcomes if o.engine == n]) for n in engines.runners}
    print(f"JSON extraction: {len(tasks)} tasks, model {lm.name}, greedy, max {args.max_tokens} new tokens, "
          f"torch {torch.__version__} on {lm.model.device.type}, {torch.get_num_threads()} threads; "
          f"engines run: {', '.join(engines.label(n) for n in engines.runners)}; "
          f"structgen constraint: {engines.constraint_label}.")
    for note in engines.notes:
        print(f"- {note}")
    print()
    print(markdown(summary, engines, outcomes, tasks))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": {"tasks": [t["id"] for t in tasks], "model": lm.name, "max_tokens": args.max_tokens,
                       "engines": list(engines.runners), "structgen_constraint": engines.constraint_label,
                       "notes": engines.notes, "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "system_prompt": SYSTEM_PROMPT},
            "summary": summary,
            "outcomes": [asdict(o) for o in outcomes],
        }, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.plot:
        plot(summary, engines, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
