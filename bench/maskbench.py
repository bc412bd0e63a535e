"""MaskBench: real-world JSON schemas through token masks, structgen next to llguidance and xgrammar.

Cases are ``<data>/maskbench/<subset>.jsonl.gz`` (one schema per line with test instances
``{data, valid}``). Every engine gets the same cases and the same token ids, through the runner
`structgen.schema.conformance` (the one the tests use):

* compile = time to first mask (TTFM): schema → compiled object → matcher → first mask;
* per-mask time: a fresh matcher per valid instance of ``json.dumps(instance)`` tokenized with
  the model's tokenizer (no special tokens); the mask before each token and after the last one
  (where EOS must be allowed) is timed, then the token consumed. Masks are also checked against
  ``consume`` (``mask/consume mismatches``);
* outcomes: an instance is accepted iff every token is consumed and the matcher ends accepting;
  valid rejected (false negative), invalid accepted (false positive), refused schemas.

Settings: structgen ``JsonSchema(schema, property_order="any", whitespace="flexible", spelling="any")`` (format as
an assertion, no remote registry; ``--property-order schema`` gives the peers' key-order
semantics); the peers with their defaults (see `peers.JsonSchemaPeer`:
xgrammar ``compile_json_schema`` any_whitespace=True, strict_mode=True, schema property order;
llguidance ``grammar_from_json_schema``, flexible whitespace, schema property order).

Each engine runs in its own worker process (spawned), cases in lockstep across engines. A case
whose compile runs past ``--compile-timeout`` (or whose instances run past ``--case-timeout``)
is recorded as ``timeout`` and its worker is killed and restarted, so a hung compile cannot stall
the run.

Usage::

    .venv/bin/python bench/maskbench.py [--subsets Github_easy,Kubernetes] [--limit N] [--seed S]
        [--model gemma-3-270m] [--engines structgen,llguidance,xgrammar]
        [--json out.json] [--plot docs/img/maskbench.png]
    .venv/bin/python bench/maskbench.py --compare before.json after.json   # A/B of two versions
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))

from structgen.schema import conformance as C  # noqa: E402

ENGINES = ["structgen", "llguidance", "xgrammar"]


# ---------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------


def _worker(engine_name: str, model_path: str, width: int, property_order: str, conn: Any,
            torch_threads: int = 1) -> None:
    """Own one engine for the model's tokenizer; run every case sent, report compile then result."""
    import torch
    from transformers import AutoTokenizer

    if torch_threads > 0:  # masks are single-threaded: idle intra-op threads only spin
        torch.set_num_threads(torch_threads)

    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if engine_name == "structgen":
        engine: Any = C.StructgenSchemaEngine(tokenizer, None, width, property_order)
    else:
        import peers

        vocab = peers.make_vocab(os.path.basename(model_path), tokenizer, width)
        engine = peers.JsonSchemaPeer(peers.ENGINE_CLASSES[engine_name](vocab))
    # per-vocabulary setup (tokenizer import, token trie) out of the first case's compile
    C.run_case(engine, C.prepare([C.Case("warmup", "warmup", {"type": "integer"}, ())], lambda t: None)[0])
    conn.send(("ready", time.perf_counter() - t0))
    while True:
        case = conn.recv()
        if case is None:
            return
        result = C.run_case(engine, case, time_masks=True,
                            on_compiled=lambda r: conn.send(("compiled", r.ttfm_s)))
        conn.send(("done", result))


class Worker:
    """One engine's worker process, restarted after a timeout."""

    def __init__(self, engine: str, model_path: str, width: int, property_order: str, ctx: Any,
                 torch_threads: int = 1) -> None:
        self.engine, self.model_path, self.width, self.ctx = engine, model_path, width, ctx
        self.property_order = property_order
        self.torch_threads = torch_threads
        self.setup_s: Optional[float] = None
        self._start()

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker, args=(self.engine, self.model_path, self.width, self.property_order, child,
                                  self.torch_threads), daemon=True)
        self.proc.start()
        child.close()
        kind, setup = self.conn.recv()
        assert kind == "ready", kind
        self.setup_s = setup if self.setup_s is None else self.setup_s

    def _restart(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()
        self._start()

    def run(self, case: C.PreparedCase, compile_timeout: float, case_timeout: float) -> C.CaseResult:
        self.conn.send(case)
        if not self.conn.poll(compile_timeout):
            self._restart()
            return C.failed_case(case, "timeout", f"compile > {compile_timeout:g} s")
        kind, payload = self.conn.recv()
        if kind == "done":  # refused or error: no compile message
            return payload
        if not self.conn.poll(case_timeout):
            self._restart()
            result = C.failed_case(case, "timeout", f"instances > {case_timeout:g} s")
            result.ttfm_s = payload
            return result
        return self.conn.recv()[1]

    def close(self) -> None:
        try:
            self.conn.send(None)
            self.proc.join(10)
        finally:
            if self.proc.is_alive():
                self.proc.kill()


# ---------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------


def summarize(results: List[C.CaseResult]) -> Dict[str, Any]:
    from regex_bench import pct  # linear-interpolated percentiles, shared by the benchmarks

    """Counts and timings of one engine over some cases."""
    status = Counter(r.status for r in results)
    valid = [i for r in results for i in r.instances if i.valid]
    invalid = [i for r in results for i in r.instances if not i.valid]
    ttfm = [r.ttfm_s for r in results if r.status == "compiled" and r.ttfm_s is not None]
    masks = [t for r in results for t in r.mask_s]
    return {
        "schemas": len(results),
        "compiled": status["compiled"],
        "refused": status["refused"],
        "error": status["error"],
        "timeout": status["timeout"],
        "passing": sum(r.status == "compiled" and all(i.outcome == "pass" for i in r.instances) for r in results),
        "valid": len(valid),
        "valid_rejected": sum(i.outcome == "false_negative" for i in valid),
        "invalid": len(invalid),
        "invalid_accepted": sum(i.outcome == "false_positive" for i in invalid),
        "instance_errors": sum(i.outcome == "error" for r in results if r.status == "compiled" for i in r.instances),
        "mask_mismatches": sum(r.mask_mismatches for r in results),
        "ttfm_ms": {q: pct(ttfm, p) * 1e3 for q, p in (("p50", .5), ("p90", .9), ("max", 1.0))},
        "masks": len(masks),
        "mask_us": {q: pct(masks, p) * 1e6 for q, p in (("p50", .5), ("p90", .9), ("p99", .99), ("p99.9", .999))},
    }


def _f(x: Optional[float]) -> str:
    if x is None or x != x:
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _ratio(x: float, base: float) -> str:
    if x != x or base != base or not base:
        return "—"
    return f"{x / base:.2f}×"


ROW_HEAD = ("| subset | engine | schemas | compiled | refused | error | timeout | passing | valid rejected "
            "| invalid accepted | mask/consume mismatches | TTFM p50 ms | TTFM p90 ms | TTFM max ms | masks "
            "| mask p50 µs | mask p90 µs | mask p99 µs | mask p99.9 µs |")
ROW_RULE = "|---|---|" + "---:|" * 17


def row(subset: str, engine: str, s: Dict[str, Any]) -> str:
    t, m = s["ttfm_ms"], s["mask_us"]
    return (f"| {subset} | {engine} | {s['schemas']} | {s['compiled']} | {s['refused']} | {s['error']} "
            f"| {s['timeout']} | {s['passing']} | {s['valid_rejected']} of {s['valid']} "
            f"| {s['invalid_accepted']} of {s['invalid']} | {s['mask_mismatches']} "
            f"| {_f(t['p50'])} | {_f(t['p90'])} | {_f(t['max'])} | {s['masks']} "
            f"| {_f(m['p50'])} | {_f(m['p90'])} | {_f(m['p99'])} | {_f(m['p99.9'])} |")


def ratio_table(results: Dict[str, List[C.CaseResult]], engines: List[str]) -> List[str]:
    """structgen's timings against each peer, on the cases every engine compiled."""
    if "structgen" not in engines or len(engines) < 2:
        return []
    n = len(results["structgen"])
    common = [k for k in range(n) if all(results[e][k].status == "compiled" for e in engines)]
    sums = {e: summarize([results[e][k] for k in common]) for e in engines}
    peers_ = [e for e in engines if e != "structgen"]
    out = [f"Timings on the {len(common)} schemas every engine compiled (ratio = structgen ÷ peer; "
           "below 1× structgen is faster):", "",
           "| metric | " + " | ".join(engines) + " | " + " | ".join(f"structgen ÷ {p}" for p in peers_) + " |",
           "|---|" + "---:|" * (len(engines) + len(peers_))]
    for label, key, q in (("TTFM p50 ms", "ttfm_ms", "p50"), ("TTFM p90 ms", "ttfm_ms", "p90"),
                          ("TTFM max ms", "ttfm_ms", "max"), ("mask p50 µs", "mask_us", "p50"),
                          ("mask p90 µs", "mask_us", "p90"), ("mask p99 µs", "mask_us", "p99"),
                          ("mask p99.9 µs", "mask_us", "p99.9")):
        vals = {e: sums[e][key][q] for e in engines}
        out.append(f"| {label} | " + " | ".join(_f(vals[e]) for e in engines) + " | "
                   + " | ".join(_ratio(vals["structgen"], vals[p]) for p in peers_) + " |")
    return out


def _peer_reason(detail: str) -> str:
    """A peer's refusal message without the exception type, cut to 60 characters."""
    return detail.split(": ", 1)[-1][:60]


def markdown(results: Dict[str, List[C.CaseResult]], engines: List[str], setup: Dict[str, float],
             note: str) -> str:
    subsets = list(dict.fromkeys(r.source for r in results[engines[0]]))
    lines = [f"MaskBench — {note}", "",
             "Per-vocabulary setup (s, not in TTFM): " + ", ".join(f"{e} {setup[e]:.2f}" for e in engines), "",
             "### All subsets", "", ROW_HEAD, ROW_RULE]
    lines += [row("**all**", e, summarize(results[e])) for e in engines]
    lines += ["", *ratio_table(results, engines), "", "### Per subset", "", ROW_HEAD, ROW_RULE]
    for s in subsets:
        lines += [row(s, e, summarize([r for r in results[e] if r.source == s])) for e in engines]
    refusals = {e: Counter((r.keyword or "?") if e == "structgen" else _peer_reason(r.detail)
                           for r in results[e] if r.status == "refused") for e in engines}
    lines += ["", "### Refusals (structgen: the keyword it names; peers: their message)", ""]
    lines += [f"* {e}: " + (", ".join(f"{k} {n}" for k, n in refusals[e].most_common(10)) or "none")
              for e in engines]
    return "\n".join(lines) + "\n"


def plot(results: Dict[str, List[C.CaseResult]], engines: List[str], path: str, title: str) -> None:
    """Per-mask time CDF per engine (log scale) over the schemas every engine compiled, and
    outcome bars per engine over all schemas."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    n = len(results[engines[0]])
    common = [k for k in range(n) if all(results[e][k].status == "compiled" for e in engines)]
    for e in engines:
        xs = np.sort(np.array([t for k in common for t in results[e][k].mask_s]) * 1e6)
        if len(xs):
            ax1.plot(xs, np.arange(1, len(xs) + 1) / len(xs), label=f"{e} ({len(xs):,} masks)")
    ax1.set_xscale("log")
    ax1.set_xlabel("per-mask time (µs, log)")
    ax1.set_ylabel("fraction of masks")
    ax1.grid(True, which="both", alpha=.3)
    ax1.legend()
    ax1.set_title(f"per-mask time CDF (valid instances of the {len(common)} schemas all compiled)")
    parts = [("passing", "tab:green"), ("valid rejected", "tab:orange"), ("invalid accepted", "tab:red"),
             ("refused", "tab:gray"), ("error/timeout", "black")]
    bottoms = np.zeros(len(engines))
    for label, color in parts:
        vals = []
        for e in engines:
            rs = results[e]
            if label == "passing":
                v = sum(r.status == "compiled" and all(i.outcome == "pass" for i in r.instances) for r in rs)
            elif label == "refused":
                v = sum(r.status == "refused" for r in rs)
            elif label == "error/timeout":
                v = sum(r.status in ("error", "timeout") for r in rs)
            else:
                want = "false_negative" if label == "valid rejected" else "false_positive"
                bad = [r for r in rs if r.status == "compiled" and any(i.outcome == want for i in r.instances)]
                if want == "false_negative":  # schemas with both count once, as invalid accepted
                    bad = [r for r in bad if not any(i.outcome == "false_positive" for i in r.instances)]
                v = len(bad)
            vals.append(v)
        ax2.bar(engines, vals, bottom=bottoms, color=color, label=label)
        bottoms += np.array(vals, dtype=float)
    ax2.set_ylabel("schemas")
    ax2.set_title("outcome per schema")
    ax2.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def compare(before: Path, after: Path, engine: str = "structgen") -> str:
    """Two `--json` runs of one engine (an A/B of two versions) on the schemas both compiled:
    outcomes of each run, then TTFM and mask percentiles over those schemas only — a version
    that compiles more schemas is not charged for their (often larger) documents."""
    from regex_bench import pct

    runs = [{(c["source"], c["description"]): c for c in json.loads(p.read_text())["cases"][engine]}
            for p in (before, after)]
    both = [k for k in runs[0] if runs[0][k]["status"] == "compiled"
            and runs[1].get(k, {}).get("status") == "compiled"]
    lines = [f"| {engine} | compiled | refused | TTFM p50 / p90 ms | mask p50 / p90 / p99 µs "
             f"({len(both)} schemas both compiled) |", "|---|---:|---:|---|---|"]
    for name, run in zip(("before", "after"), runs):
        status = Counter(c["status"] for c in run.values())
        ttfm = sorted(run[k]["ttfm_s"] * 1e3 for k in both)
        masks = sorted(t for k in both for t in run[k]["mask_s"])  # µs in the JSON
        lines.append(f"| {name} | {status['compiled']} | {status['refused']} | "
                     f"{_f(pct(ttfm, .5))} / {_f(pct(ttfm, .9))} | "
                     f"{_f(pct(masks, .5))} / {_f(pct(masks, .9))} / {_f(pct(masks, .99))} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder holding maskbench/ (default ../shared/data)")
    ap.add_argument("--subsets", help="comma list of subsets (default: all)")
    ap.add_argument("--limit", type=int, help="at most N schemas per subset (drawn with --seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="structgen.load_model name or directory (default SmolLM2)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--compile-timeout", type=float, default=60.0, help="seconds per compile (default 60)")
    ap.add_argument("--case-timeout", type=float, default=300.0,
                    help="seconds for one schema's instances after compile (default 300)")
    ap.add_argument("--property-order", choices=("any", "schema"), default="any",
                    help="structgen's property_order (default any, as in the conformance test; "
                         "the peers enforce schema order)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads in every worker (default 1: masks are single-threaded, "
                         "and idle OpenMP threads spin on the shared cores; 0 = torch's default)")
    ap.add_argument("--json", type=Path, help="write every case result (with mask times) here")
    ap.add_argument("--plot", help="PNG: per-mask time CDF and outcomes per engine")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                    help="no run: compare two --json files of structgen (an A/B of two versions)")
    args = ap.parse_args(argv)
    if args.compare:
        print(compare(*args.compare))
        return 0

    import structgen
    from peers import available_engines
    from regex_bench import machine_note

    if not (args.data / "maskbench").is_dir():
        print(f"MaskBench data not found under {args.data}", file=sys.stderr)
        return 2
    engines, skipped = available_engines([e.strip() for e in args.engines.split(",") if e.strip()])
    for e, why in skipped.items():
        print(f"skipping {e}: {why}", file=sys.stderr)
    if not engines:
        return 2
    subsets = args.subsets.split(",") if args.subsets else C.maskbench_subsets(args.data)
    loaded = structgen.load_model(args.model, progress=False)
    encode = C.make_encoder(loaded.tokenizer, loaded.vocab.token_bytes)
    cases: List[C.Case] = []
    for k, s in enumerate(subsets):
        cases += C.sample_cases(C.load_maskbench(args.data, s), args.limit, args.seed + k)
    prepared = C.prepare(cases, encode)
    untok = sum(ids is None for c in prepared for i in c.instances for ids in i.spellings)
    print(f"{len(prepared)} schemas from {len(subsets)} subsets, {loaded.name} ({loaded.vocab.width} tokens); "
          f"{untok} spellings the tokenizer does not round-trip", file=sys.stderr)

    ctx = mp.get_context("spawn")
    workers = {e: Worker(e, str(loaded.path), loaded.vocab.width, args.property_order, ctx, args.torch_threads)
               for e in engines}
    results: Dict[str, List[C.CaseResult]] = {e: [] for e in engines}
    t0 = time.perf_counter()
    try:
        for k, case in enumerate(prepared):
            for e in engines:
                results[e].append(workers[e].run(case, args.compile_timeout, args.case_timeout))
            if (k + 1) % 25 == 0 or k + 1 == len(prepared):
                print(f"[{time.perf_counter() - t0:6.0f} s] {k + 1}/{len(prepared)} schemas", file=sys.stderr)
    finally:
        for w in workers.values():
            w.close()

    note = (f"{len(prepared)} schemas, {loaded.name} ({loaded.vocab.width:,} tokens), "
            f"structgen property_order={args.property_order!r}, torch threads per worker {args.torch_threads or 'default'}, "
            f"limit {args.limit} per subset, seed {args.seed}; {machine_note()}; {time.perf_counter() - t0:.0f} s")
    print(markdown(results, engines, {e: w.setup_s or 0.0 for e, w in workers.items()}, note))
    for e in engines:
        for line in C.failures(results[e], ["false_positive", "error"])[:20]:
            print(f"{e}: {line}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({
            "note": note, "engines": engines,
            "summary": {e: summarize(results[e]) for e in engines},
            "cases": {e: [dict(dataclasses.asdict(r), mask_s=[round(t * 1e6, 2) for t in r.mask_s])
                          for r in results[e]] for e in engines},
        }, indent=1))
    if args.plot:
        plot(results, engines, args.plot, f"MaskBench, {loaded.name}, {len(prepared)} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
