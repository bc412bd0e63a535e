"""Command line: `structgen regex PATTERN`, `structgen grammar FILE`, `structgen json --schema FILE`,
each with `--prompt TEXT` (or `--prompt -` for stdin). Exit status 0 finished, 2 error, 3 cut off."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import StructgenError


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prompt", required=True, help="prompt text, or - to read it from stdin")
    p.add_argument("--chat", action="store_true",
                   help="send the prompt as a user chat message (tokenizer's chat template)")
    p.add_argument("--model", default=None,
                   help="'smollm2' (default), 'gemma-3-270m', or a local Hugging Face model directory")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the result and its stats as JSON")
    p.add_argument("--no-speculative", action="store_true",
                   help="plain one-token decoding (default: speculative when it helps; same output)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="structgen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    regex = sub.add_parser("regex", help="generate text that fully matches a regular expression")
    regex.add_argument("pattern", help="Python regex syntax, matched against the whole output")
    _add_generation_args(regex)
    grammar = sub.add_parser("grammar", help="generate text in the language of a Lark (or GBNF) grammar")
    grammar.add_argument("file", help="a .lark grammar file (a .gbnf file is imported as GBNF)")
    grammar.add_argument("--start", default="start", help="start rule of a Lark grammar")
    _add_generation_args(grammar)
    schema = sub.add_parser("json", help="generate JSON that validates against a JSON Schema")
    schema.add_argument("--schema", required=True, help="a JSON Schema file (draft 2020-12)")
    schema.add_argument("--whitespace", default="compact",
                        help="'compact' (default), 'flexible' (bounded) or a regex for whitespace")
    schema.add_argument("--property-order", choices=("schema", "any"), default="schema")
    schema.add_argument("--lenient", action="store_true",
                        help="drop keywords that cannot be enforced exactly (printed as warnings)")
    _add_generation_args(schema)
    args = parser.parse_args(argv)

    from . import Grammar, JsonSchema, Regex, generate, load_model

    try:
        if args.command == "regex":
            constraint = Regex(args.pattern)
        else:
            path = args.file if args.command == "grammar" else args.schema
            try:
                text = open(path, encoding="utf-8").read()
            except OSError as e:
                print(f"structgen: error: cannot read {args.command}: {e}", file=sys.stderr)
                return 2
            if args.command == "json":
                constraint = JsonSchema(text, whitespace=args.whitespace,
                                        property_order=args.property_order, lenient=args.lenient)
                for warning in constraint.warnings:
                    print(f"structgen: warning: {warning}", file=sys.stderr)
            elif path.endswith(".gbnf"):
                constraint = Grammar.from_gbnf(text)
            else:
                constraint = Grammar(text, start=args.start)
        prompt_text = sys.stdin.read() if args.prompt == "-" else args.prompt
        prompt = [{"role": "user", "content": prompt_text}] if args.chat else prompt_text
        model = load_model(args.model)
        result = generate(model, prompt, constraint, max_tokens=args.max_tokens,
                          temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                          seed=args.seed, speculative=False if args.no_speculative else None)
    except StructgenError as e:
        print(f"structgen: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        value = result.value if args.command == "json" else None
        print(json.dumps({"text": result.text, "value": value, "finished": result.finished,
                          "finish_reason": result.finish_reason, "tokens": result.tokens,
                          "stats": result.stats.as_dict()}, ensure_ascii=False))
    else:
        print(result.text)
        s = result.stats
        print(f"[{s.new_tokens} tokens in {s.seconds:.2f} s, {s.tokens_per_s:.1f} tok/s, "
              f"masks {s.mask_seconds * 1e3:.1f} ms, {result.finish_reason}]", file=sys.stderr)
    if not result.finished:
        print(f"structgen: incomplete: max_tokens={args.max_tokens} reached before the output was "
              "complete", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
