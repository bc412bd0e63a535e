"""Replay greedy outputs through the drafters: verify passes without running the model.

Greedy speculative decoding emits exactly the plain greedy tokens, whatever the drafters guess;
only the number of verify passes (and positions per pass) changes. So a drafting policy can be
judged offline on outputs recorded once: this script takes the structgen outputs of an
extraction-benchmark run (`bench/extraction_bench.py --json FILE`), rebuilds each task's prompt
ids and JSON Schema constraint, and replays the decode loop's drafting (`loop._draft`, the real
drafters and `DraftLength`) against the recorded tokens: a draft is accepted up to its first token
that differs from the output. Time is modelled, not measured: a pass of w positions costs
`--curve`'s w-th value (relative to a one-token pass; default: the line 1 + `--per-position` *
(w - 1)), a prompt token `--prefill` (CPU, SmolLM2: about 0.06 of a one-token pass), and the
loop's `PassCost` table is given that curve, so passes are padded to cheaper widths as in
`generate`.

Usage::

    .venv/bin/python bench/extraction_bench.py --engines structgen --json /tmp/ext.json
    .venv/bin/python bench/draft_replay.py /tmp/ext.json [--per-position 0.15] [--verbose]
    .venv/bin/python bench/draft_replay.py /tmp/ext.json --curve 1,1.39,1.59,1.35,1.6,1.63,1.8,1.63,1.85,1.83,2.05,1.89,2.09
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import extraction_bench as eb  # noqa: E402

import structgen  # noqa: E402
from structgen.decoding import loop  # noqa: E402
from structgen.decoding.drafters import Drafter, ForcedDrafter, LookupDrafter  # noqa: E402
from structgen.decoding.sampling import SamplingParams  # noqa: E402
from structgen.decoding.speculative import DraftLength, PassCost  # noqa: E402


def replay(lm: Any, task: dict[str, Any], output: list[int], drafters: list[Drafter],
           curve: list[float], prefill: float, max_tokens: int) -> dict[str, Any]:
    """Passes, modelled cost and per-drafter counts of speculative decoding of `output`."""
    prompt = eb.prompt_ids(lm.tokenizer, eb.chat_messages(task))
    automaton = structgen.JsonSchema(task["schema"], whitespace="compact").compile(lm.vocab)
    for drafter in drafters:
        drafter.start(prompt)
    costs = PassCost(len(curve))
    for width, cost in enumerate(curve, 1):
        for _ in range(costs.explore):
            costs.observe(width, cost)
    lengths = DraftLength(costs=costs)
    stats = loop.GenerationStats()
    free = torch.ones(lm.vocab.width, dtype=torch.bool)
    state, history, done, passes = automaton.start, list(prompt), 0, 0
    cost = prefill * len(prompt)
    while done < len(output):
        room = max_tokens - done - 1
        draft, _, sources, _ = loop._draft(drafters, lengths, history, automaton, state,
                                           SamplingParams(), None, free, frozenset(), room, stats)
        accepted = 0
        while (accepted < len(draft) and done + accepted < len(output)
               and draft[accepted] == output[done + accepted]):
            accepted += 1
        passes += 1
        width = costs.width(len(draft) + 1)  # past the curve: its last slope
        cost += curve[min(width, len(curve)) - 1] + max(0, width - len(curve)) * (curve[-1] - curve[-2])
        for token in output[done:done + accepted + 1]:
            state = automaton.advance(state, token)
            history.append(token)
            for drafter in drafters:
                drafter.observe(token)
        done += accepted + 1
        loop._score_drafters(lengths, sources, accepted, stats)
    return {"task": task["id"], "tokens": len(output), "passes": passes, "cost": cost,
            "drafted": dict(stats.drafted), "accepted": dict(stats.accepted)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="extraction_bench.py --json output")
    parser.add_argument("--engine", default="", help="engine whose outputs to replay "
                        "(default: structgen, else structgen-spec)")
    parser.add_argument("--per-position", type=float, default=0.15)
    parser.add_argument("--curve", default="", help="comma list: cost of a pass of 1, 2, ... "
                        "positions relative to one (13 values; overrides --per-position)")
    parser.add_argument("--prefill", type=float, default=0.06)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--verbose", action="store_true", help="one line per task")
    args = parser.parse_args()
    curve = ([float(x) for x in args.curve.split(",")] if args.curve
             else [1.0 + args.per_position * w for w in range(13)])
    outcomes = json.loads(Path(args.results).read_text(encoding="utf-8"))["outcomes"]
    engines = {o["engine"] for o in outcomes}
    engine = args.engine or ("structgen" if "structgen" in engines else "structgen-spec")
    lm = structgen.load_model()
    tasks = {t["id"]: t for t in eb.load_tasks()}
    rows = []
    for o in outcomes:
        if o["engine"] != engine or not o.get("tokens"):
            continue
        drafters: list[Drafter] = [ForcedDrafter(lm.tokenizer), LookupDrafter()]
        rows.append(replay(lm, tasks[o["task"]], o["tokens"], drafters, curve,
                           args.prefill, args.max_tokens))
        if args.verbose:
            print(rows[-1])
    total = {k: sum(r[k] for r in rows) for k in ("tokens", "passes", "cost")}
    plain = sum(r["tokens"] for r in rows) + sum(
        args.prefill * len(eb.prompt_ids(lm.tokenizer, eb.chat_messages(tasks[r["task"]])))
        for r in rows)
    print(f"{len(rows)} outputs of {engine}: {total['tokens']} tokens, {total['passes']} verify "
          f"passes ({total['tokens'] / total['passes']:.2f} tokens/pass), modelled cost "
          f"{total['cost']:.0f} vs {plain:.0f} plain ({plain / total['cost']:.2f}x)")
    for name in sorted({n for r in rows for n in r["drafted"]}):
        drafted = sum(r["drafted"].get(name, 0) for r in rows)
        accepted = sum(r["accepted"].get(name, 0) for r in rows)
        print(f"  {name}: {accepted} of {drafted} drafted tokens accepted")


if __name__ == "__main__":
    main()
