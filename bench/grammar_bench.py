"""Grammar constraint benchmark: structgen side by side with its peers.

For every shipped Lark grammar (``grammars/*.lark``) and every vocabulary, each
engine with context-free grammar support (structgen, xgrammar through its own
Lark importer ``GrammarCompiler.compile_lark``, llguidance through
``LLMatcher.grammar_from_lark``; outlines-core has no grammar support, missing
peers are skipped) is measured in the same process, on the same token
sequences, with ``bench/regex_bench.py``'s method:

* compile (cold): wall time from the grammar text to the first mask, with the
  engine's per-grammar caches cleared first (median of --compile-repeat tries;
  per-vocabulary setup is done and warmed up beforehand on an unrelated
  grammar, and reported separately). For structgen it is Lark text -> CFG and
  terminal byte DFAs (``Grammar(text)``, also reported alone as *build*), the
  grammar automaton for the vocabulary, and the trie walk of the start state;
* new matcher: a fresh matcher from the already compiled object to its first
  mask (what a second request with the same grammar pays);
* per-token mask time: sentences of each grammar (the examples in the
  grammar file's header comment plus the realistic ones in ``EXTRA`` below)
  are tokenized with the model's tokenizer (``encode(text,
  add_special_tokens=False)``) and at every position each engine computes its
  mask (timed) and then consumes the token, engines in lockstep. The final mask,
  after the last token, is timed too (it has to allow EOS). Pass 1 is reported
  on its own as *1st pass*: structgen builds grammar states and their masks
  lazily and caches them, so its first visit of a state is a trie walk
  (rows, Earley parser) and later visits are a dictionary lookup;
* structgen's time split: ``GrammarAutomaton.profile`` accumulates, over every
  fresh (uncached) mask, the trie walk, the building of new grammar-state rows
  from terminal DFA rows (the lexer) and, within that, the Earley parser; its
  ``fractions()`` are reported per grammar.

Agreement checks (never timed, never fatal), as in the regex benchmark: the
sentence's token must be allowed by every engine's mask and accepted by its
consume(); EOS must be allowed at the end; and the full allowed sets are
compared with structgen's as sets of token *byte strings*. Every disagreement
is printed (up to --max-print) with the grammar, the exact prefix and the
tokens only one side allows, and saved in full to --json. llguidance
differences where it only allows the canonical token of bytes it considers
forced (``compute_ff_bytes``) are classified as ``llg_forced_canonical``.

Usage::

    .venv/bin/python bench/grammar_bench.py [--vocab smollm2,gemma] [--repeat N]
        [--engines structgen,xgrammar,llguidance] [--grammar json,c_like,...]
        [--json results.json] [--plot docs/img/grammar_bench.png]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import peers  # noqa: E402
from regex_bench import (  # noqa: E402  (same method, same helpers)
    VOCABS,
    Disagreements,
    _f,
    _ratio,
    _short,
    canon_set,
    canon_table,
    load_vocab,
    machine_note,
    pct,
    summary_table,
)

# ---------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAMMAR_DIR = os.path.join(ROOT, "grammars")
GRAMMARS = ["json", "arithmetic", "sqlite_select", "c_like", "python_expr"]
ENGINE_ORDER = ["structgen", "xgrammar", "llguidance"]
WARMUP_GRAMMAR = 'start: "warm" NUM "up"\nNUM: /[0-9]+/\n'

# (engine, grammar) -> (sentences, passes) that engine takes part in; the rest run without it.
# Keeps the run to minutes and the machine alive; lift with --cap ENGINE:GRAMMAR=N[:P].
#  * xgrammar on sqlite_select: 0.3-2 s per mask (every mask, nothing cached between steps);
#    on c_like ~0.1 s per mask, so one pass only (its masks cost the same on every pass).
DEFAULT_CAPS: Dict[Tuple[str, str], Tuple[int, int]] = {
    ("xgrammar", "sqlite_select"): (1, 1),
    ("xgrammar", "c_like"): (99, 1),
}

# Realistic sentences, in addition to the examples of each grammar file's header comment.
EXTRA: Dict[str, List[str]] = {
    "json": [
        '{"id": 4821, "title": "Wireless Mouse", "price": 24.99, "in_stock": true, '
        '"categories": ["electronics", "accessories"], "rating": {"average": 4.6, "count": 1283}}',
        '{\n  "user": {\n    "login": "octocat",\n    "id": 583231,\n    "site_admin": false\n  },\n'
        '  "labels": [],\n  "body": null\n}',
        '{"model": "gpt-4o", "messages": [{"role": "system", "content": "You are a helpful assistant."}, '
        '{"role": "user", "content": "What\'s the weather in Paris?"}], "temperature": 0.7}',
        '[{"date": "2024-03-01", "temp_c": -3.5, "wind": {"speed": 12, "dir": "NW"}}, '
        '{"date": "2024-03-02", "temp_c": 1.0E+1, "wind": {"speed": 0, "dir": null}}]',
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", '
        '"coordinates": [102.0, 0.5]}, "properties": {"prop0": "value0"}}]}',
    ],
    "arithmetic": [
        "3.14 * 2 * 6371",
        "(100 - 37.5) / (2 + 3) * 4",
        "((12 + 7) * 3 - 4 ^ 2) / 0.5",
        "-2^-1 + 10 / (3 - -1)",
        "1000 * (1 + 0.05)^10",
    ],
    "sqlite_select": [
        "SELECT DISTINCT T1.first_name, T1.last_name FROM employees AS T1 JOIN departments AS T2 "
        "ON T1.department_id = T2.department_id WHERE T2.name = 'Sales' AND T1.salary BETWEEN 40000 AND 80000",
        "SELECT country, AVG(age) FROM singer GROUP BY country ORDER BY AVG(age) DESC LIMIT 3",
        "SELECT title FROM movies WHERE year > 2000 AND genre IN ('Drama', 'Comedy') "
        "AND director IS NOT NULL ORDER BY rating DESC;",
        "SELECT name FROM students WHERE id NOT IN (SELECT student_id FROM enrollments WHERE grade < 60)",
        "SELECT p.product_name, SUM(o.quantity * o.unit_price) AS revenue FROM orders AS o "
        "LEFT JOIN products AS p ON o.product_id = p.id GROUP BY p.product_name HAVING revenue > 1000.0",
        "select count(distinct customer_id) from orders where order_date like '2023-%' "
        "union select count(*) from returns",
    ],
    "c_like": [
        "int max(int a, int b) {\n    return a > b ? a : b;\n}",
        "void swap(int *a, int *b) {\n    int tmp = *a;\n    *a = *b;\n    *b = tmp;\n}",
        "unsigned long hash(char *s) {\n    unsigned long h = 5381;\n    while (*s) h = ((h << 5) + h) + *s++;\n"
        "    return h;\n}",
        "int sum(int arr[], int n) { int total = 0; for (int i = 0; i < n; ++i) { total += arr[i]; } return total; }",
        'double mean = 0.0; if (count != 0) mean = 1.0 * total / count; else printf("empty\\n");',
        "while (node != 0 && node->value < key) { prev = node; node = node->next; }",
    ],
    "python_expr": [
        "sorted(items, key=lambda item: item[1], reverse=True)[:10]",
        "df[df['age'] > 30].groupby('city')['income'].mean()",
        "np.sqrt(np.sum((x - y) ** 2, axis=-1))",
        "f\"{name} is {age} years old\" if age >= 18 else 'minor'",
        "{'status': 'ok', 'count': len(results), 'first': results[0] if results else None}",
        "math.floor(total / max(1, n_batches)) * batch_size + 0x10",
    ],
}


def header_examples(text: str) -> List[str]:
    """The sentences listed after `// Examples:` in a grammar's header comment (one per line,
    continuation lines indented to the same column), as written in the file."""
    lines = text.splitlines()
    out: List[str] = []
    col = None
    for line in lines:
        if not line.startswith("//"):
            if col is not None:
                break
            continue
        if col is None:
            k = line.find("Examples:")
            if k >= 0:
                rest = line[k + len("Examples:"):]
                col = k + len("Examples:") + len(rest) - len(rest.lstrip())
                if rest.strip():
                    out.append(rest.strip())
            continue
        body = line[col:] if len(line) > col and not line[2:col].strip() else None
        if not body or not body.strip():
            break
        out.append(body.rstrip())
    return out


def load_grammar(name: str) -> Tuple[str, List[str]]:
    with open(os.path.join(GRAMMAR_DIR, name + ".lark"), encoding="utf-8") as f:
        text = f.read()
    return text, header_examples(text) + EXTRA.get(name, [])


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------


def time_compile(eng: peers.Engine, text: str):
    t0 = time.perf_counter()
    c = eng.compile_grammar(text)
    m = eng.matcher(c)
    m.mask()
    return time.perf_counter() - t0, c, m


class LarkOracle:
    """Is a token only the reference (structgen) allows really a continuation in Lark's own
    semantics? prefix + token + structgen's shortest completion from there must parse with
    `lark.Lark(text, parser="earley", lexer="dynamic_complete")` (the semantics structgen's
    grammars follow; plain "dynamic" only tries each terminal's longest match, so it rejects
    e.g. `1._` (NUMBER `1`, `.`, NAME `_`) in python_expr, which structgen rightly allows). True: Lark agrees with structgen (the peer is narrower); False: Lark
    rejects it (a structgen bug); None: not checkable (no completion, not UTF-8)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.parser = None
        self.results: Dict[str, int] = {}

    def set_grammar(self, text: str) -> None:
        import lark

        self.parser = lark.Lark(text, parser="earley", lexer="dynamic_complete")

    def check(self, automaton, state, prefix: bytes, tok: Optional[bytes]):
        if tok is None or self.budget <= 0:
            return None
        self.budget -= 1
        try:
            after = automaton._advance_bytes(state, tok)
            tail = None if after is None else automaton.completion_bytes(after)
            if tail is None:
                return None
            text = (prefix + tok + tail).decode("utf-8")
        except Exception:
            return None
        try:
            self.parser.parse(text)
            return True
        except Exception:
            return False


def _classify(eng_name: str, m, only_e: List[int], only_r: List[int], vocab: peers.BenchVocab,
              pos: int, case_insensitive: bool, added: frozenset = frozenset()) -> str:
    """Name known, deliberate semantic differences, so that they are not mistaken for bugs:

    * llg_forced_canonical: llguidance allows only the canonical token of bytes it considers
      forced (``compute_ff_bytes``), as in the regex benchmark;
    * py_re_casefold: structgen follows Python `re` for `"kw"i` literals, which also folds
      U+0131 ı → i, U+017F ſ → s and U+212A K → k; the peers fold ASCII only (tokens holding
      those characters or their first UTF-8 bytes);
    * leading_ignore: at the very start structgen (like Lark) allows %ignore'd whitespace,
      the peers do not;
    * llg_no_added_tokens: llguidance never allows the tokenizer's added, non-special tokens
      (Gemma's `<table>`, `<h1>`... HTML tokens), even where their bytes fit.
    Anything else (or tokens only the peer allows) is "unexplained"."""
    if eng_name == "llguidance" and only_r and not only_e and hasattr(m, "forced_bytes"):
        ff = m.forced_bytes()
        if ff and all(ff.startswith(vocab.token_bytes[i]) or vocab.token_bytes[i].startswith(ff)
                      for i in only_r):
            return "llg_forced_canonical"
    if only_e or not only_r:
        return "unexplained"
    reasons = set()
    for i in only_r:
        b = vocab.token_bytes[i]
        if eng_name == "llguidance" and i in added:
            reasons.add("llg_no_added_tokens")
        elif case_insensitive and any(x in b for x in (b"\xc4", b"\xc5", b"\xe2\x84")) and (
                b"\xc4" not in b or b"\xc4\xb1" in b or b.endswith(b"\xc4")) and (
                b"\xc5" not in b or b"\xc5\xbf" in b or b.endswith(b"\xc5")):
            reasons.add("py_re_casefold")
        elif pos == 0 and b[:1] in (b" ", b"\t", b"\n", b"\r"):
            reasons.add("leading_ignore")
        else:
            return "unexplained"
    return "+".join(sorted(reasons))


def bench_vocab(vname: str, vocab: peers.BenchVocab, engine_names: List[str], args,
                dis: Disagreements) -> Tuple[List[dict], Dict[str, dict]]:
    setups: Dict[str, dict] = {}
    engines: Dict[str, peers.Engine] = {}
    for n in engine_names:
        t0 = time.perf_counter()
        try:
            eng = peers.ENGINE_CLASSES[n](vocab)
            if not eng.supports_grammar:
                print(f"[{vname}] {n}: no grammar support, skipped", file=sys.stderr)
                continue
            t1 = time.perf_counter()
            time_compile(eng, WARMUP_GRAMMAR)
            eng.clear_cache()
        except Exception as e:
            print(f"[{vname}] {n}: setup failed, skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        t2 = time.perf_counter()
        engines[n] = eng
        setups[n] = {"setup_ms": (t1 - t0) * 1e3, "first_pattern_ms": (t2 - t1) * 1e3}
        print(f"[{vname}] {n}: vocabulary setup {(t1 - t0) * 1e3:.0f} ms, "
              f"warm-up grammar {(t2 - t1) * 1e3:.0f} ms", file=sys.stderr)
    ref = "structgen" if "structgen" in engines else ("xgrammar" if "xgrammar" in engines else None)
    canon = canon_table(vocab)
    rows: List[dict] = []
    oracle = LarkOracle(args.oracle_budget)
    added = frozenset(i for i, t in getattr(vocab.tokenizer, "added_tokens_decoder", {}).items()
                      if not t.special and i < vocab.width)
    max_sent = args.max_sentences_gemma if vname == "gemma" else args.max_sentences

    for gname in GRAMMARS:
        text, sentences = load_grammar(gname)
        oracle.set_grammar(text)
        if max_sent:
            sentences = sentences[:max_sent]
        seqs: List[Tuple[str, List[int]]] = []
        for s in sentences:
            ids = vocab.encode(s)
            if vocab.detok(ids) != s.encode("utf-8"):
                print(f"[{vname}] {gname}: tokenization of {s!r} does not round-trip, sentence skipped",
                      file=sys.stderr)
                continue
            seqs.append((s, ids))

        compiled = {}
        res = {n: {"mask_us": [], "mask_us_first": [], "cold_all_ms": [], "consume_us": [], "cold_ms": None,
                   "warm_ms": [], "rejects": 0, "not_allowed": 0, "set_diff_positions": 0,
                   "set_diff_explained": 0, "set_diff_lark_ok": 0, "eos_missing": 0, "not_accepting": 0, "allowed_sizes": [],
                   "error": None, "extra": {}}
               for n in engines}
        # ---- compile: cold (caches cleared before each try), then a new matcher
        for n, eng in engines.items():
            colds = []
            try:
                for _ in range(max(1, args.compile_repeat)):
                    eng.clear_cache()
                    gc.collect()
                    dt, c, m0 = time_compile(eng, text)
                    colds.append(dt * 1e3)
            except Exception as e:
                res[n]["error"] = f"{type(e).__name__}: {e}"
                print(f"[{vname}] {gname}: {n} failed to compile: {res[n]['error']}", file=sys.stderr)
                continue
            compiled[n] = c
            res[n]["cold_ms"] = statistics.median(colds)
            res[n]["cold_all_ms"] = colds
            if n == "structgen":
                # Grammar(text) alone (Lark -> CFG + terminal DFAs), and the split of the cold
                # compile's first (fresh) mask.
                builds = []
                for _ in range(max(1, args.compile_repeat)):
                    eng.clear_cache()
                    t0 = time.perf_counter()
                    eng.compile_grammar(text)
                    builds.append((time.perf_counter() - t0) * 1e3)
                p = m0.automaton.profile
                res[n]["extra"].update(build_ms=statistics.median(builds),
                                       first_mask_ms=p.total * 1e3, first_mask_fractions=p.fractions())
            for _ in range(max(1, args.compile_repeat)):
                t0 = time.perf_counter()
                eng.matcher(c).mask()
                res[n]["warm_ms"].append((time.perf_counter() - t0) * 1e3)
        live = [n for n in engines if n in compiled]

        # ---- per-token masks, in lockstep
        sg_automaton = None
        caps = {n: args.caps.get((n, gname), (len(seqs), args.repeat)) for n in live}
        for rep in range(args.repeat):
            check = rep == 0
            for si, (stext, ids) in enumerate(seqs):
                ms = {}
                for n in live:
                    if si >= caps[n][0] or rep >= caps[n][1]:
                        continue
                    try:
                        ms[n] = engines[n].matcher(compiled[n])
                    except Exception as e:
                        res[n]["error"] = f"{type(e).__name__}: {e}"
                if "structgen" in ms:
                    sg_automaton = ms["structgen"].automaton
                dead = set()
                prefix = b""
                for pos in range(len(ids) + 1):
                    tok = ids[pos] if pos < len(ids) else None
                    allowed = {}
                    for n, m in ms.items():
                        if n in dead:
                            continue
                        t0 = time.perf_counter()
                        m.mask()
                        t1 = time.perf_counter()
                        res[n]["mask_us"].append((t1 - t0) * 1e6)
                        if not check:
                            continue
                        res[n]["mask_us_first"].append((t1 - t0) * 1e6)
                        a = m.allowed()
                        allowed[n] = a
                        res[n]["allowed_sizes"].append(int(a.sum()))
                        if tok is not None and not bool(a[tok]):
                            res[n]["not_allowed"] += 1
                            dis.add(kind="token_not_in_mask", vocab=vname, grammar=gname, engine=n,
                                    text=repr(stext), pos=pos, token=tok,
                                    token_bytes=repr(vocab.token_bytes[tok]), prefix=repr(prefix),
                                    state=m.state())
                        if tok is None and not bool(a[vocab.eos_id]):
                            res[n]["eos_missing"] += 1
                            dis.add(kind="eos_not_in_final_mask", vocab=vname, grammar=gname, engine=n,
                                    text=repr(stext), accepting=m.is_accepting(), state=m.state())
                    if check and ref in allowed:
                        rs = canon_set(allowed[ref], canon)
                        for n, a in allowed.items():
                            if n == ref:
                                continue
                            es = canon_set(a, canon)
                            if torch.equal(es, rs):
                                continue
                            res[n]["set_diff_positions"] += 1
                            only_e = torch.nonzero(es & ~rs).flatten().tolist()
                            only_r = torch.nonzero(rs & ~es).flatten().tolist()
                            cls = _classify(n, ms[n], only_e, only_r, vocab, pos, '"i' in text, added)
                            if cls != "unexplained":
                                res[n]["set_diff_explained"] += 1
                            lark_ok = None
                            if ref == "structgen" and only_r and oracle.budget > 0:
                                lark_ok = [oracle.check(ms[ref].automaton, ms[ref]._m.state, prefix,
                                                        vocab.token_bytes[i]) for i in only_r[:2]]
                            if lark_ok and all(lark_ok):
                                res[n]["set_diff_lark_ok"] += 1
                            dis.add(kind="mask_sets_differ", cls=cls, vocab=vname, grammar=gname, engine=n,
                                    ref=ref, text=repr(stext), pos=pos, prefix=repr(prefix),
                                    next_token=None if tok is None else repr(vocab.token_bytes[tok]),
                                    n_only_engine=len(only_e), n_only_ref=len(only_r),
                                    only_engine=[(i, _short(vocab.token_bytes[i])) for i in only_e[:6]],
                                    only_ref=[(i, _short(vocab.token_bytes[i])) for i in only_r[:6]],
                                    ref_only_lark=lark_ok, engine_state=ms[n].state())
                    if tok is None:
                        if check:
                            for n, m in ms.items():
                                if n not in dead and not m.is_accepting():
                                    res[n]["not_accepting"] += 1
                                    dis.add(kind="not_accepting_at_end", vocab=vname, grammar=gname, engine=n,
                                            text=repr(stext), state=m.state())
                        break
                    for n, m in ms.items():
                        if n in dead:
                            continue
                        t0 = time.perf_counter()
                        ok = m.consume(tok)
                        t1 = time.perf_counter()
                        res[n]["consume_us"].append((t1 - t0) * 1e6)
                        if not ok:
                            dead.add(n)
                            res[n]["rejects"] += 1
                            if check:
                                dis.add(kind="consume_rejected", vocab=vname, grammar=gname, engine=n,
                                        text=repr(stext), pos=pos, token=tok,
                                        token_bytes=repr(vocab.token_bytes[tok]), prefix=repr(prefix))
                    prefix += vocab.token_bytes[tok] or b""
        if sg_automaton is not None:
            p = sg_automaton.profile
            res["structgen"]["extra"].update(
                fresh_masks=p.masks, fresh_total_ms=p.total * 1e3, fractions=p.fractions(),
                fresh_mean_ms=(p.total * 1e3 / p.masks) if p.masks else None,
                grammar_states=len(getattr(sg_automaton, "_lexemes", [])) - 1)

        for n in engines:
            r = res[n]
            mk = r["mask_us"]
            rows.append({
                "vocab": vname, "grammar": gname, "engine": n,
                "compile_cold_ms": r["cold_ms"], "compile_cold_all_ms": r["cold_all_ms"],
                "compile_warm_ms": statistics.median(r["warm_ms"]) if r["warm_ms"] else None,
                "mask_p50_us": pct(mk, 0.5), "mask_p90_us": pct(mk, 0.9), "mask_p99_us": pct(mk, 0.99),
                "mask_max_us": max(mk) if mk else float("nan"),
                "consume_p50_us": pct(r["consume_us"], 0.5),
                "first_pass_mask_mean_us": statistics.fmean(r["mask_us_first"]) if r["mask_us_first"] else None,
                "first_pass_mask_p50_us": pct(r["mask_us_first"], 0.5),
                "first_pass_mask_p99_us": pct(r["mask_us_first"], 0.99),
                "first_pass_mask_max_us": max(r["mask_us_first"]) if r["mask_us_first"] else None,
                "first_pass_total_ms": ((r["cold_ms"] or 0) + sum(r["mask_us_first"]) / 1e3)
                if r["cold_ms"] is not None else None,
                "masks": len(mk), "sentences": len(seqs), "tokens": sum(len(i) for _, i in seqs),
                "allowed_median": pct(r["allowed_sizes"], 0.5),
                "token_not_allowed": r["not_allowed"], "consume_rejected": r["rejects"],
                "eos_missing": r["eos_missing"], "not_accepting": r["not_accepting"],
                "set_diff_positions": r["set_diff_positions"], "set_diff_explained": r["set_diff_explained"],
                "set_diff_lark_ok": r["set_diff_lark_ok"],
                "set_ref": ref, "error": r["error"], "structgen": r["extra"] or None,
                "cap": list(args.caps[(n, gname)]) if (n, gname) in args.caps else None,
                "mask_us": [round(x, 3) for x in mk],
                "mask_us_first": [round(x, 3) for x in r["mask_us_first"]],
            })
        msg = ", ".join(f"{n} {res[n]['cold_ms'] or float('nan'):.1f} ms / p50 {pct(res[n]['mask_us'], .5):.1f} µs"
                        f" / 1st {statistics.fmean(res[n]['mask_us_first']) if res[n]['mask_us_first'] else float('nan'):.0f} µs"
                        for n in engines)
        print(f"[{vname}] {gname}: {len(seqs)} sentences, {sum(len(i) for _, i in seqs)} tokens; {msg}",
              file=sys.stderr)
    return rows, setups


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def _pctf(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def markdown(rows: List[dict], setups: Dict[str, Dict[str, dict]], engines: List[str]) -> str:
    vocabs = list(dict.fromkeys(r["vocab"] for r in rows))
    out = summary_table(
        rows, setups, engines, "grammars",
        "vocab setup = adapter construction for the vocabulary + the first (warm-up) grammar. "
        "new matcher = a fresh matcher from the already compiled grammar, to its first mask. "
        "1st-pass mean = mean mask time over the first pass over the sentences (states seen for the "
        "first time; structgen builds and walks them there). compile + 1st pass = cold compile plus "
        "every mask of the first pass (one compile serving the sentences once), median over the grammars. ",
        with_p90=True)
    for v in vocabs:
        out.append(f"### {VOCABS.get(v, (None, v))[1]}\n")
        out.append("| grammar | engine | compile cold ms | new matcher ms | mask p50 µs | p90 µs | p99 µs "
                   "| max µs | 1st-pass p50 µs | 1st-pass p99 µs | 1st-pass max µs | tokens (masks) "
                   "| allowed (median) | cold vs sg | p50 vs sg | 1st-pass p99 vs sg | checks |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for g in GRAMMARS:
            base = next((r for r in rows if r["vocab"] == v and r["grammar"] == g
                         and r["engine"] == "structgen"), None)
            for e in engines:
                r = next((r for r in rows if r["vocab"] == v and r["grammar"] == g and r["engine"] == e), None)
                if r is None:
                    continue
                checks = []
                for key, lab in (("token_not_allowed", "tok∉mask"), ("consume_rejected", "rejected"),
                                 ("eos_missing", "no EOS"), ("not_accepting", "not accepting")):
                    if r[key]:
                        checks.append(f"{lab} {r[key]}")
                if r["set_diff_positions"]:
                    ex = r["set_diff_explained"]
                    checks.append(f"sets≠{r['set_ref']} {r['set_diff_positions']}"
                                  + f" ({ex} explained, {r['set_diff_lark_ok']} Lark-confirmed)")
                if r["error"]:
                    checks.append("error: " + r["error"][:60])
                if r.get("cap"):
                    checks.append(f"capped: {r['cap'][0]} sentence(s), {r['cap'][1]} pass(es)")
                out.append(
                    f"| {g} | {e} | {_f(r['compile_cold_ms'], 2)} | {_f(r['compile_warm_ms'], 2)} "
                    f"| {_f(r['mask_p50_us'])} | {_f(r['mask_p90_us'])} | {_f(r['mask_p99_us'])} "
                    f"| {_f(r['mask_max_us'])} | {_f(r['first_pass_mask_p50_us'])} "
                    f"| {_f(r['first_pass_mask_p99_us'])} | {_f(r['first_pass_mask_max_us'])} "
                    f"| {r['tokens']} ({r['masks']}) | {_f(r['allowed_median'], 0)} "
                    f"| {_ratio(r['compile_cold_ms'], base and base['compile_cold_ms'])} "
                    f"| {_ratio(r['mask_p50_us'], base and base['mask_p50_us'])} "
                    f"| {_ratio(r['first_pass_mask_p99_us'], base and base['first_pass_mask_p99_us'])} "
                    f"| {', '.join(checks) or 'ok'} |")
        out.append("")
    # -- structgen split
    sg = [r for r in rows if r["engine"] == "structgen" and r["structgen"]]
    if sg:
        out.append("### structgen: where fresh-mask time goes (`GrammarAutomaton.profile`)\n")
        out.append("| vocab | grammar | build ms | cold first mask ms | grammar states | fresh masks "
                   "| fresh-mask total ms | fresh mask mean ms | trie walk | rows (lexer) | Earley parser |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in sg:
            x = r["structgen"]
            fr = x.get("fractions") or {}
            out.append(f"| {r['vocab']} | {r['grammar']} | {_f(x.get('build_ms'), 2)} "
                       f"| {_f(x.get('first_mask_ms'), 2)} | {x.get('grammar_states', '—')} "
                       f"| {x.get('fresh_masks', '—')} | {_f(x.get('fresh_total_ms'))} "
                       f"| {_f(x.get('fresh_mean_ms'), 2)} | {_pctf(fr.get('walk'))} "
                       f"| {_pctf(fr.get('rows'))} | {_pctf(fr.get('parser'))} |")
        out.append("")
        out.append("build = `Grammar(text)` alone (Lark parse → CFG + terminal byte DFAs; part of compile cold). "
                   "cold first mask = the trie walk of the start state within compile cold. fresh masks = masks "
                   "computed (not served from the per-state cache) over the compile and all passes; grammar states "
                   "= states interned since the last cache drop (structgen drops every cache past "
                   "`GrammarAutomaton.max_states` interned states; states only reached inside trie walks count). "
                   "The three "
                   "fractions split the fresh-mask time: trie walk proper, building rows of new grammar states "
                   "from terminal DFA rows (lexer), and the Earley parser (scans and set merges where lexemes end).\n")
    return "\n".join(out)


def plot(rows: List[dict], engines: List[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    vocabs = list(dict.fromkeys(r["vocab"] for r in rows))
    names = [g for g in GRAMMARS if any(r["grammar"] == g for r in rows)]
    colors = {"structgen": "#d62728", "xgrammar": "#1f77b4", "outlines-core": "#2ca02c", "llguidance": "#9467bd"}
    fig, axes = plt.subplots(len(vocabs), 2, figsize=(14, 4.2 * len(vocabs)), squeeze=False)
    w = 0.8 / max(1, len(engines))
    x = np.arange(len(names))
    panels = (("per-token mask µs (bar p50, tick p99, dot 1st-pass mean)", "mask_p50_us", "mask_p99_us"),
              ("compile to first mask, ms (bar cold, tick new matcher)", "compile_cold_ms", "compile_warm_ms"))
    for i, v in enumerate(vocabs):
        for j, (title, key, key2) in enumerate(panels):
            ax = axes[i][j]
            for k, e in enumerate(engines):
                rs = [next((r for r in rows if r["vocab"] == v and r["grammar"] == g and r["engine"] == e), None)
                      for g in names]
                vals = [r[key] if r and r[key] is not None else np.nan for r in rs]
                vals2 = [r[key2] if r and r[key2] is not None else np.nan for r in rs]
                xs = x + (k - (len(engines) - 1) / 2) * w
                ax.bar(xs, vals, w, label=e, color=colors.get(e))
                ax.scatter(xs, vals2, marker="_", s=120, color="black", zorder=3)
                if j == 0:
                    fp = [r["first_pass_mask_mean_us"] if r and r["first_pass_mask_mean_us"] is not None
                          else np.nan for r in rs]
                    ax.scatter(xs, fp, marker="o", s=14, facecolor="white", edgecolor="black", zorder=4)
            ax.set_yscale("log")
            ax.set_xticks(x)
            ax.set_xticklabels(names, fontsize=9)
            ax.set_title(f"{VOCABS.get(v, (None, v))[1]}: {title}", fontsize=10)
            ax.grid(axis="y", which="both", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}", file=sys.stderr)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", default="smollm2,gemma", help="comma list of: " + ",".join(VOCABS))
    ap.add_argument("--engines", default=",".join(ENGINE_ORDER), help="comma list of engines")
    ap.add_argument("--grammar", default=None, help="comma list of grammar names (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the sentences (timing)")
    ap.add_argument("--compile-repeat", type=int, default=3,
                    help="cold compiles (median reported) and new-matcher repeats")
    ap.add_argument("--max-sentences", type=int, default=0, help="sentences per grammar (0: all)")
    ap.add_argument("--max-sentences-gemma", type=int, default=0,
                    help="sentences per grammar on the Gemma vocabulary (0: all)")
    ap.add_argument("--cap", action="append", default=[], metavar="ENGINE:GRAMMAR=N[:P]",
                    help="run ENGINE on the first N sentences of GRAMMAR, in the first P passes only "
                         "(defaults: " + ", ".join(f"{e}:{g}={n}:{p}" for (e, g), (n, p) in DEFAULT_CAPS.items())
                    + "); a large N lifts a default cap")
    ap.add_argument("--oracle-budget", type=int, default=400,
                    help="structgen-only tokens checked with Lark's own parser, per vocabulary")
    ap.add_argument("--json", default=None, help="write raw results here")
    ap.add_argument("--plot", default=None, help="write a PNG plot here")
    ap.add_argument("--max-print", type=int, default=40, help="disagreements printed (all go to --json)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                    help="load vocab NAME with structgen.load_model(DIR) (a local Hugging Face model "
                         "directory) instead of the built-in model")
    args = ap.parse_args(argv)
    args.caps = dict(DEFAULT_CAPS)
    for c in args.cap:
        key, val = c.split("=", 1)
        e, g = key.split(":", 1)
        n, _, p = val.partition(":")
        args.caps[(e, g)] = (int(n), int(p) if p else args.repeat)

    global GRAMMARS
    if args.grammar:
        keep = set(args.grammar.split(","))
        GRAMMARS = [g for g in GRAMMARS if g in keep]
    tdirs = dict(s.split("=", 1) for s in args.model)
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    engines, skipped = peers.available_engines(wanted)
    for n, why in skipped.items():
        print(f"skipping {n}: {why}", file=sys.stderr)
    if not engines:
        print("no engine available", file=sys.stderr)
        return 1

    t_start = time.perf_counter()
    load0 = os.getloadavg()[0]
    rows: List[dict] = []
    setups: Dict[str, Dict[str, dict]] = {}
    dis = Disagreements(args.max_print)
    for vname in [v.strip() for v in args.vocab.split(",") if v.strip()]:
        if vname not in VOCABS:
            print(f"unknown vocab {vname!r}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        vocab = load_vocab(vname, tdirs)
        print(f"[{vname}] tokenizer loaded in {time.perf_counter() - t0:.1f} s, logits width {vocab.width}",
              file=sys.stderr)
        r, s = bench_vocab(vname, vocab, engines, args, dis)
        rows += r
        setups[vname] = s
        del vocab
        gc.collect()

    order = [e for e in ENGINE_ORDER if e in engines and any(r["engine"] == e for r in rows)]
    note = (f"{machine_note()}; load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
            f"total {time.perf_counter() - t_start:.0f} s")
    print(f"\n<!-- {note} -->\n")
    print(markdown(rows, setups, order))
    by_kind: Dict[str, int] = {}
    for d in dis.items:
        key = f"{d['kind']}{'/' + d['cls'] if 'cls' in d else ''} ({d['engine']}, {d['vocab']})"
        by_kind[key] = by_kind.get(key, 0) + 1
    print("Disagreements (kind/class (engine, vocab): positions): "
          + (", ".join(f"{k}: {v}" for k, v in sorted(by_kind.items())) or "none"))
    lark = [x for d in dis.items for x in (d.get("ref_only_lark") or [])]
    if lark:
        print(f"\nLark's parser (dynamic_complete) on prefix + structgen-only token + structgen's shortest completion: "
              f"{lark.count(True)} parse, {lark.count(False)} do not, {lark.count(None)} not checkable.")
        for d in dis.items:
            if False in (d.get("ref_only_lark") or []):
                print(f"  LARK REJECTS structgen-only token: {d['vocab']} {d['grammar']} prefix={d['prefix']} "
                      f"tokens={d['only_ref'][:2]}")
    if args.json:
        with open(args.json, "w") as f:
            args.caps = {f"{e}:{g}": v for (e, g), v in args.caps.items()}
            json.dump({"machine": note, "args": vars(args), "grammars": GRAMMARS,
                       "sentences": {g: load_grammar(g)[1] for g in GRAMMARS}, "setups": setups,
                       "rows": rows, "disagreements": dis.items}, f, indent=1, default=str)
        print(f"raw results written to {args.json}", file=sys.stderr)
    if args.plot:
        plot(rows, order, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
