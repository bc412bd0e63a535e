"""Batched generation benchmark: tokens/s of `structgen.generate` over lists of prompts.

The JSON-extraction tasks of ``examples/extraction/`` (prompts and schemas built by
``bench/extraction_bench.py``) are decoded greedily with ``JsonSchema(schema,
whitespace="compact")``, first one prompt per call (the single-row path, the reference), then in
batches of each size in ``--sizes``, without and with speculative decoding (forced + lookup
drafters). A warm-up pass over every task comes first, so that constraint compilation and mask
caches (process-wide) favour no configuration.

Reported per configuration: new tokens, wall seconds and tokens/s, CPU seconds
(``time.process_time``, steadier than wall time on a shared machine) and tokens per CPU second,
forward passes, and how many rows are token-identical to the single-row output of the same
prompt (greedy decoding promises all of them).

Usage::

    .venv/bin/python bench/batch_bench.py [--limit 8] [--max-tokens 160] [--sizes 1,4,8]
        [--threads 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from extraction_bench import chat_messages, forget_shared, load_tasks  # noqa: E402

import structgen  # noqa: E402


def run(lm: Any, tasks: list[dict[str, Any]], size: int, speculative: bool,
        max_tokens: int) -> tuple[dict[str, Any], list[list[int]]]:
    """Decode every task, `size` prompts per call (0: the single-prompt path, no list). Each
    configuration starts cold: constraints shared from an earlier one would be warm."""
    forget_shared()
    outputs: list[list[int]] = []
    passes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    step = size or 1
    for i in range(0, len(tasks), step):
        chunk = tasks[i:i + step]
        constraints = [structgen.JsonSchema(t["schema"], whitespace="compact") for t in chunk]
        if size == 0:
            results = [structgen.generate(lm, chat_messages(chunk[0]), constraints[0],
                                          max_tokens=max_tokens, speculative=speculative)]
        else:
            results = structgen.generate(lm, [chat_messages(t) for t in chunk], constraints,
                                         max_tokens=max_tokens, speculative=speculative)
        outputs += [r.tokens for r in results]
        passes += max(r.stats.forward_passes for r in results)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = sum(len(o) for o in outputs)
    return {"size": size, "speculative": speculative, "tokens": tokens, "wall_s": wall,
            "tokens_per_s": tokens / wall, "cpu_s": cpu, "tokens_per_cpu_s": tokens / cpu,
            "forward_passes": passes}, outputs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=8, help="first N tasks (0: all)")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--sizes", default="1,4,8", help="comma list of batch sizes")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", default=None, help="write the rows of the table here")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    tasks = load_tasks(limit=args.limit)
    lm = structgen.load_model(progress=False)
    sizes = [int(s) for s in args.sizes.split(",")]

    t = time.perf_counter()
    run(lm, tasks, 0, True, args.max_tokens)
    print(f"warm-up pass: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    rows = []
    for speculative in (False, True):
        ref_stats, reference = run(lm, tasks, 0, speculative, args.max_tokens)
        rows.append({**ref_stats, "identical": len(tasks)})
        for size in sizes:
            stats, outputs = run(lm, tasks, size, speculative, args.max_tokens)
            stats["identical"] = sum(a == b for a, b in zip(outputs, reference))
            rows.append(stats)
            print(stats, file=sys.stderr, flush=True)

    print(f"Batched generation: {len(tasks)} extraction tasks, model {lm.name}, greedy, max "
          f"{args.max_tokens} new tokens, JsonSchema (compact), torch {torch.__version__} on "
          f"{lm.model.device.type}, {torch.get_num_threads()} threads.\n")
    print("| speculative | batch | new tokens | wall s | tok/s | CPU s | tok/CPU s | forward passes "
          "| rows = single-row |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        size = "single path" if r["size"] == 0 else str(r["size"])
        print(f"| {'yes' if r['speculative'] else 'no'} | {size} | {r['tokens']} | {r['wall_s']:.1f} "
              f"| {r['tokens_per_s']:.1f} | {r['cpu_s']:.1f} | {r['tokens_per_cpu_s']:.1f} "
              f"| {r['forward_passes']} | {r['identical']}/{len(tasks)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
