"""Regex constraint benchmark: structgen side by side with its peers.

For every regex and every vocabulary, each engine (structgen, xgrammar,
outlines-core, llguidance; missing peers are skipped) is measured in the same
process, on the same token sequences:

* compile (cold): wall time from the pattern string to the first mask, with the
  engine's per-pattern caches cleared first (median of --compile-repeat tries;
  per-vocabulary setup is done and warmed up beforehand on an unrelated
  pattern, and reported separately);
* new matcher: a fresh matcher from the already compiled object to its first
  mask (what a second request with the same constraint pays);
* per-token mask time: a few strings matching each regex are drawn with a
  seeded random generator, tokenized with the model's tokenizer
  (``encode(text, add_special_tokens=False)``), and at every position each
  engine computes its mask (timed) and then consumes the token. The masks are
  computed in lockstep, engine after engine, at every position. The final mask,
  after the last token, is timed too (it has to allow EOS).

Agreement checks (never timed, never fatal): the sampled token must be allowed
by every engine's mask and accepted by its consume(); EOS must be allowed at
the end; and the full allowed sets are compared with a reference engine
(structgen when present, xgrammar otherwise), as sets of token *byte strings*
(special tokens left out), so that vocabularies holding the same bytes under
two ids (Gemma's ``<0x2D>`` byte-fallback token and ``-``) do not count.

Usage::

    .venv/bin/python bench/regex_bench.py [--vocab smollm2,gemma] [--repeat N]
        [--engines structgen,xgrammar,outlines-core,llguidance]
        [--json results.json] [--plot docs/img/regex_bench.png]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import peers  # noqa: E402

# ---------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------

# ASCII classes are spelt out: `\d` means "any Unicode digit" to Python re,
# outlines-core and llguidance (Rust regex), but [0-9] to xgrammar, and the
# point here is speed on the same language, not the meaning of `\d`.
WORDS = (
    "apple banana cherry date elderberry fig grape honeydew kiwi lemon mango "
    "nectarine orange papaya quince raspberry strawberry tangerine ugli vanilla"
).split()

REGEXES: List[Tuple[str, str]] = [
    ("iso_date", r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    ("email", r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}"),
    ("phone", r"\+?1?[ -]?\(?[0-9]{3}\)?[ -]?[0-9]{3}-[0-9]{4}"),
    ("identifier", r"[A-Za-z_][A-Za-z0-9_]{0,31}"),
    ("float", r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?"),
    ("unicode", r"[αβγδ]{1,5} (café|naïve|日本語)"),
    ("words20", "(" + "|".join(WORDS) + ")"),
    ("lower_10_60", r"[a-z]{10,60}"),
]

VOCABS = {
    # bench name -> (structgen.load_model argument, pretty name)
    "smollm2": (None, "SmolLM2 (49,152)"),
    "gemma": ("gemma-3-270m", "Gemma-3 (262,144)"),
}

ENGINE_ORDER = ["structgen", "xgrammar", "outlines-core", "llguidance"]

WARMUP_PATTERN = r"warm[0-9]+up"

# ---------------------------------------------------------------------------
# Seeded generator of strings matching a regex (Python's own parser)
# ---------------------------------------------------------------------------

try:  # Python >= 3.11
    import re._constants as _sre_c  # type: ignore
    import re._parser as _sre_p  # type: ignore
except ImportError:  # pragma: no cover
    import sre_constants as _sre_c  # type: ignore
    import sre_parse as _sre_p  # type: ignore

_PRINTABLE = [chr(c) for c in range(32, 127)]
_CATEGORY = {
    _sre_c.CATEGORY_DIGIT: "0123456789",
    _sre_c.CATEGORY_SPACE: " ",
    _sre_c.CATEGORY_WORD: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
}


def _gen(items, rng: random.Random, out: List[str], max_extra: int) -> None:
    for op, av in items:
        if op is _sre_c.LITERAL:
            out.append(chr(av))
        elif op is _sre_c.NOT_LITERAL:
            out.append(rng.choice([c for c in _PRINTABLE if ord(c) != av]))
        elif op is _sre_c.ANY:
            out.append(rng.choice(_PRINTABLE))
        elif op is _sre_c.IN:
            out.append(_gen_in(av, rng))
        elif op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, getattr(_sre_c, "POSSESSIVE_REPEAT", None)):
            lo, hi, sub = av
            if hi is _sre_c.MAXREPEAT:
                hi = lo + max_extra
            for _ in range(rng.randint(lo, hi)):
                _gen(sub, rng, out, max_extra)
        elif op is _sre_c.SUBPATTERN:
            _gen(av[-1], rng, out, max_extra)
        elif op is _sre_c.BRANCH:
            _gen(rng.choice(av[1]), rng, out, max_extra)
        elif op is _sre_c.AT:
            pass
        else:
            raise ValueError(f"unsupported regex construct {op}")


def _gen_in(items, rng: random.Random) -> str:
    chars: List[str] = []
    negate = False
    for op, av in items:
        if op is _sre_c.NEGATE:
            negate = True
        elif op is _sre_c.LITERAL:
            chars.append(chr(av))
        elif op is _sre_c.RANGE:
            chars.extend(chr(c) for c in range(av[0], av[1] + 1))
        elif op is _sre_c.CATEGORY:
            chars.extend(_CATEGORY.get(av, ""))
        else:
            raise ValueError(f"unsupported class item {op}")
    if negate:
        chars = [c for c in _PRINTABLE if c not in set(chars)]
    return rng.choice(chars)


def sample_strings(pattern: str, n: int, seed: int, max_extra: int = 12) -> List[str]:
    rng = random.Random(f"{seed}:{pattern}")
    parsed = _sre_p.parse(pattern)
    out: List[str] = []
    seen = set()
    for _ in range(n * 20):
        buf: List[str] = []
        _gen(parsed, rng, buf, max_extra)
        s = "".join(buf)
        if s in seen or not re.fullmatch(pattern, s):
            continue
        seen.add(s)
        out.append(s)
        if len(out) == n:
            break
    return out


# ---------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------


def _logits_width(loaded, tokenizer) -> int:
    model = getattr(loaded, "model", None)
    if model is not None:
        try:
            return int(model.get_output_embeddings().weight.shape[0])
        except Exception:
            cfg = getattr(model, "config", None)
            cfg = getattr(cfg, "text_config", None) or cfg
            if getattr(cfg, "vocab_size", None):
                return int(cfg.vocab_size)
    return len(tokenizer)


def load_vocab(name: str, model_paths: Dict[str, str]) -> peers.BenchVocab:
    """Tokenizer and logits width through structgen.load_model (the built-in model,
    or the local Hugging Face directory given with --model NAME=DIR)."""
    import structgen

    arg = model_paths.get(name, VOCABS[name][0])
    loaded = structgen.load_model(progress=False) if arg is None else structgen.load_model(arg, progress=False)
    tok = loaded.tokenizer
    width = getattr(getattr(loaded, "vocab", None), "width", None) or _logits_width(loaded, tok)
    return peers.make_vocab(name, tok, width, loaded=loaded)


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------


def pct(xs: Sequence[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * q
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def _short(b: Optional[bytes]) -> str:
    return repr(b) if b is None or len(b) <= 24 else repr(b[:24]) + "…"


class Disagreements:
    def __init__(self, max_print: int):
        self.max_print = max_print
        self.items: List[dict] = []
        self.printed = 0

    def add(self, **kw) -> None:
        self.items.append(kw)
        if self.printed < self.max_print:
            self.printed += 1
            print("  DISAGREE " + " ".join(f"{k}={v}" for k, v in kw.items()), file=sys.stderr)


def canon_table(vocab: peers.BenchVocab) -> torch.Tensor:
    """canon[id] = smallest id with the same bytes (special ids -> -1)."""
    first: Dict[bytes, int] = {}
    canon = torch.full((vocab.width,), -1, dtype=torch.long)
    for i, b in enumerate(vocab.token_bytes):
        if b is not None:
            canon[i] = first.setdefault(b, i)
    return canon


def canon_set(allowed: torch.Tensor, canon: torch.Tensor) -> torch.Tensor:
    ids = canon[allowed & (canon >= 0)]
    out = torch.zeros_like(allowed)
    out[ids] = True
    return out


def time_compile(eng: peers.Engine, pattern: str):
    t0 = time.perf_counter()
    c = eng.compile(pattern)
    m = eng.matcher(c)
    m.mask()
    return time.perf_counter() - t0, c


def bench_vocab(
    vname: str,
    vocab: peers.BenchVocab,
    engine_names: List[str],
    args,
    dis: Disagreements,
) -> Tuple[List[dict], Dict[str, dict]]:
    setups: Dict[str, dict] = {}
    engines: Dict[str, peers.Engine] = {}
    for n in engine_names:
        t0 = time.perf_counter()
        try:
            eng = peers.ENGINE_CLASSES[n](vocab)
            t1 = time.perf_counter()
            time_compile(eng, WARMUP_PATTERN)
            eng.clear_cache()
        except Exception as e:
            print(f"[{vname}] {n}: setup failed, skipped ({type(e).__name__}: {e})", file=sys.stderr)
            continue
        t2 = time.perf_counter()
        engines[n] = eng
        setups[n] = {"setup_ms": (t1 - t0) * 1e3, "first_pattern_ms": (t2 - t1) * 1e3}
        print(f"[{vname}] {n}: vocabulary setup {(t1 - t0) * 1e3:.0f} ms, "
              f"warm-up pattern {(t2 - t1) * 1e3:.0f} ms", file=sys.stderr)
    sg_vocab = getattr(vocab.loaded, "vocab", None)
    if sg_vocab is not None and hasattr(sg_vocab, "token_bytes"):
        diff = [i for i in range(vocab.width)
                if vocab.token_bytes[i] is not None and i < len(sg_vocab.token_bytes)
                and sg_vocab.token_bytes[i] is not None and sg_vocab.token_bytes[i] != vocab.token_bytes[i]]
        print(f"[{vname}] token bytes: structgen vs bench decoding differ on {len(diff)} ids"
              + (f", e.g. {[(i, vocab.token_bytes[i], sg_vocab.token_bytes[i]) for i in diff[:5]]}" if diff else ""),
              file=sys.stderr)
    ref = "structgen" if "structgen" in engines else ("xgrammar" if "xgrammar" in engines else None)
    canon = canon_table(vocab)
    rows: List[dict] = []

    for rname, pattern in REGEXES:
        texts = sample_strings(pattern, args.samples, args.seed)
        seqs: List[Tuple[str, List[int]]] = []
        for t in texts:
            ids = vocab.encode(t)
            if vocab.detok(ids) != t.encode("utf-8"):
                print(f"[{vname}] {rname}: tokenization of {t!r} does not round-trip, sample skipped",
                      file=sys.stderr)
                continue
            seqs.append((t, ids))

        compiled = {}
        res = {n: {"mask_us": [], "mask_us_first": [], "cold_all_ms": [], "consume_us": [], "cold_ms": None, "warm_ms": [], "rejects": 0,
                   "not_allowed": 0, "set_diff_positions": 0, "eos_missing": 0, "not_accepting": 0,
                   "allowed_sizes": [], "error": None}
               for n in engines}
        # ---- compile: cold (caches cleared before each try), then a new matcher from the
        # ---- compiled object (engines one after the other)
        for n, eng in engines.items():
            colds = []
            try:
                for _ in range(max(1, args.compile_repeat)):
                    eng.clear_cache()
                    gc.collect()
                    dt, c = time_compile(eng, pattern)
                    colds.append(dt * 1e3)
            except Exception as e:
                res[n]["error"] = f"{type(e).__name__}: {e}"
                print(f"[{vname}] {rname}: {n} failed to compile: {res[n]['error']}", file=sys.stderr)
                continue
            compiled[n] = c
            res[n]["cold_ms"] = statistics.median(colds)
            res[n]["cold_all_ms"] = colds
            for _ in range(max(1, args.compile_repeat)):
                t0 = time.perf_counter()
                eng.matcher(c).mask()
                res[n]["warm_ms"].append((time.perf_counter() - t0) * 1e3)
        live = [n for n in engines if n in compiled]

        # ---- per-token masks, in lockstep
        for rep in range(args.repeat):
            check = rep == 0
            for text, ids in seqs:
                ms = {}
                for n in live:
                    try:
                        ms[n] = engines[n].matcher(compiled[n])
                    except Exception as e:
                        res[n]["error"] = f"{type(e).__name__}: {e}"
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
                        if check:
                            res[n]["mask_us_first"].append((t1 - t0) * 1e6)
                        if check:
                            a = m.allowed()
                            allowed[n] = a
                            res[n]["allowed_sizes"].append(int(a.sum()))
                            if tok is not None and not bool(a[tok]):
                                res[n]["not_allowed"] += 1
                                dis.add(kind="token_not_in_mask", vocab=vname, regex=rname, engine=n,
                                        text=repr(text), pos=pos, token=tok,
                                        token_bytes=_short(vocab.token_bytes[tok]), prefix=_short(prefix),
                                        state=m.state())
                            if tok is None and not bool(a[vocab.eos_id]):
                                res[n]["eos_missing"] += 1
                                dis.add(kind="eos_not_in_final_mask", vocab=vname, regex=rname, engine=n,
                                        text=repr(text), accepting=m.is_accepting(), state=m.state())
                    if check and ref in allowed:
                        rs = canon_set(allowed[ref], canon)
                        for n, a in allowed.items():
                            if n == ref:
                                continue
                            es = canon_set(a, canon)
                            if not torch.equal(es, rs):
                                res[n]["set_diff_positions"] += 1
                                only_e = torch.nonzero(es & ~rs).flatten().tolist()
                                only_r = torch.nonzero(rs & ~es).flatten().tolist()
                                dis.add(kind="mask_sets_differ", vocab=vname, regex=rname, engine=n, ref=ref,
                                        text=repr(text), pos=pos, prefix=_short(prefix),
                                        n_only_engine=len(only_e), n_only_ref=len(only_r),
                                        only_engine=[(i, _short(vocab.token_bytes[i])) for i in only_e[:4]],
                                        only_ref=[(i, _short(vocab.token_bytes[i])) for i in only_r[:4]],
                                        ref_state=ms[ref].state())
                    if tok is None:
                        if check:
                            for n, m in ms.items():
                                if n not in dead and not m.is_accepting():
                                    res[n]["not_accepting"] += 1
                                    dis.add(kind="not_accepting_at_end", vocab=vname, regex=rname, engine=n,
                                            text=repr(text), state=m.state())
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
                                dis.add(kind="consume_rejected", vocab=vname, regex=rname, engine=n,
                                        text=repr(text), pos=pos, token=tok,
                                        token_bytes=_short(vocab.token_bytes[tok]), prefix=_short(prefix))
                    prefix += vocab.token_bytes[tok] or b""

        for n in engines:
            r = res[n]
            mk = r["mask_us"]
            rows.append({
                "vocab": vname, "regex": rname, "pattern": pattern, "engine": n,
                "compile_cold_ms": r["cold_ms"], "compile_cold_all_ms": r["cold_all_ms"],
                "compile_warm_ms": statistics.median(r["warm_ms"]) if r["warm_ms"] else None,
                "mask_p50_us": pct(mk, 0.5), "mask_p90_us": pct(mk, 0.9), "mask_p99_us": pct(mk, 0.99),
                "mask_max_us": max(mk) if mk else float("nan"),
                "consume_p50_us": pct(r["consume_us"], 0.5),
                "first_pass_mask_mean_us": statistics.fmean(r["mask_us_first"]) if r["mask_us_first"] else None,
                "first_pass_mask_p99_us": pct(r["mask_us_first"], 0.99),
                "first_pass_total_ms": ((r["cold_ms"] or 0) + sum(r["mask_us_first"]) / 1e3) if r["cold_ms"] is not None else None,
                "masks": len(mk), "strings": len(seqs),
                "tokens": sum(len(i) for _, i in seqs),
                "allowed_median": pct(r["allowed_sizes"], 0.5),
                "token_not_allowed": r["not_allowed"], "consume_rejected": r["rejects"],
                "eos_missing": r["eos_missing"], "not_accepting": r["not_accepting"],
                "set_diff_positions": r["set_diff_positions"], "set_ref": ref,
                "error": r["error"], "mask_us": [round(x, 3) for x in mk],
                "mask_us_first": [round(x, 3) for x in r["mask_us_first"]],
            })
        msg = ", ".join(f"{n} {res[n]['cold_ms'] or float('nan'):.1f} ms / p50 {pct(res[n]['mask_us'], .5):.1f} µs"
                        for n in engines)
        print(f"[{vname}] {rname}: {len(seqs)} strings, {sum(len(i) for _, i in seqs)} tokens; {msg}",
              file=sys.stderr)
    return rows, setups


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------


def _f(x, nd=1) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def _ratio(x, base) -> str:
    if x is None or base is None or base == 0 or x != x or base != base:
        return "—"
    return f"{x / base:.2f}×"


def summary_table(rows: List[dict], setups: Dict[str, Dict[str, dict]], engines: List[str],
                  subject: str, setup_note: str, with_p90: bool = False) -> List[str]:
    """The per-vocabulary summary shared by the regex and grammar benchmarks: medians over the
    `subject`s (regexes, grammars), masks pooled over every position, ratios vs structgen."""
    out: List[str] = []
    vocabs = list(dict.fromkeys(r["vocab"] for r in rows))
    p90_head, p90_rule = ("| mask p90 µs ", "---:|") if with_p90 else ("", "")
    out.append(f"### Summary (medians over the {subject}; masks pooled over every position)\n")
    out.append("| vocab | engine | vocab setup ms | compile cold ms (median) | new matcher ms (median) "
               f"| mask p50 µs {p90_head}| mask p99 µs | 1st-pass mean µs | compile + 1st pass ms | masks "
               "| cold vs structgen | p50 vs structgen | p99 vs structgen | 1st-pass mean vs structgen "
               "| compile + 1st pass vs structgen |")
    out.append("|---|---|---:|---:|---:|---:|" + p90_rule + "---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summ: Dict[Tuple[str, str], dict] = {}
    for v in vocabs:
        for e in engines:
            rs = [r for r in rows if r["vocab"] == v and r["engine"] == e]
            if not rs:
                continue
            colds = [r["compile_cold_ms"] for r in rs if r["compile_cold_ms"] is not None]
            warms = [r["compile_warm_ms"] for r in rs if r["compile_warm_ms"] is not None]
            mk = [x for r in rs for x in r["mask_us"]]
            fp = [x for r in rs for x in r["mask_us_first"]]
            tot = [r["first_pass_total_ms"] for r in rs if r["first_pass_total_ms"] is not None]
            summ[(v, e)] = {"fp": statistics.fmean(fp) if fp else None,
                            "tot": statistics.median(tot) if tot else None,
                            "cold": statistics.median(colds) if colds else None,
                            "warm": statistics.median(warms) if warms else None,
                            "p50": pct(mk, .5), "p90": pct(mk, .9), "p99": pct(mk, .99), "n": len(mk)}
        base = summ.get((v, "structgen"))
        for e in engines:
            s = summ.get((v, e))
            if s is None:
                continue
            st = setups.get(v, {}).get(e, {})
            setup = (st.get("setup_ms") or 0) + (st.get("first_pattern_ms") or 0) if st else None
            p90 = f"| {_f(s['p90'])} " if with_p90 else ""
            out.append(f"| {v} | {e} | {_f(setup)} | {_f(s['cold'], 2)} | {_f(s['warm'], 2)} "
                       f"| {_f(s['p50'])} {p90}| {_f(s['p99'])} | {_f(s['fp'])} | {_f(s['tot'], 2)} "
                       f"| {s['n']} | {_ratio(s['cold'], base and base['cold'])} "
                       f"| {_ratio(s['p50'], base and base['p50'])} | {_ratio(s['p99'], base and base['p99'])} "
                       f"| {_ratio(s['fp'], base and base['fp'])} | {_ratio(s['tot'], base and base['tot'])} |")
    out.append("")
    out.append(setup_note + "Ratios are engine / structgen: above 1× the peer is slower than structgen, "
               "below 1× faster.\n")
    return out


def markdown(rows: List[dict], setups: Dict[str, Dict[str, dict]], engines: List[str]) -> str:
    vocabs = list(dict.fromkeys(r["vocab"] for r in rows))
    out = summary_table(
        rows, setups, engines, "regexes",
        "vocab setup = adapter construction for the vocabulary + the first (warm-up) pattern. "
        "new matcher = a fresh matcher from the already compiled object, to its first mask. "
        "1st-pass mean = mean mask time over the first pass over the token sequences (states seen for "
        "the first time; lazy engines pay their per-state work there). compile + 1st pass = cold compile "
        "plus every mask of the first pass (one compile serving the sampled strings once), median over "
        "the regexes. ")
    # -- full table
    for v in vocabs:
        out.append(f"### {VOCABS.get(v, (None, v))[1]}\n")
        out.append("| regex | engine | compile cold ms | new matcher ms | mask p50 µs | p90 µs | p99 µs "
                   "| max µs | tokens (masks) | allowed (median) | cold vs sg | p50 vs sg | checks |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for rname, _ in REGEXES:
            base = next((r for r in rows if r["vocab"] == v and r["regex"] == rname
                         and r["engine"] == "structgen"), None)
            for e in engines:
                r = next((r for r in rows if r["vocab"] == v and r["regex"] == rname and r["engine"] == e), None)
                if r is None:
                    continue
                checks = []
                for key, lab in (("token_not_allowed", "tok∉mask"), ("consume_rejected", "rejected"),
                                 ("eos_missing", "no EOS"), ("not_accepting", "not accepting"),
                                 ("set_diff_positions", f"sets≠{r['set_ref']}")):
                    if r[key]:
                        checks.append(f"{lab} {r[key]}")
                if r["error"]:
                    checks.append("error")
                out.append(
                    f"| {rname} | {e} | {_f(r['compile_cold_ms'], 2)} | {_f(r['compile_warm_ms'], 2)} "
                    f"| {_f(r['mask_p50_us'])} | {_f(r['mask_p90_us'])} | {_f(r['mask_p99_us'])} "
                    f"| {_f(r['mask_max_us'])} | {r['tokens']} ({r['masks']}) | {_f(r['allowed_median'], 0)} "
                    f"| {_ratio(r['compile_cold_ms'], base and base['compile_cold_ms'])} "
                    f"| {_ratio(r['mask_p50_us'], base and base['mask_p50_us'])} "
                    f"| {', '.join(checks) or 'ok'} |")
        out.append("")
    return "\n".join(out)


def plot(rows: List[dict], engines: List[str], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    vocabs = list(dict.fromkeys(r["vocab"] for r in rows))
    names = [n for n, _ in REGEXES]
    colors = {"structgen": "#d62728", "xgrammar": "#1f77b4", "outlines-core": "#2ca02c", "llguidance": "#9467bd"}
    fig, axes = plt.subplots(len(vocabs), 2, figsize=(15, 4.2 * len(vocabs)), squeeze=False)
    w = 0.8 / max(1, len(engines))
    x = np.arange(len(names))
    for i, v in enumerate(vocabs):
        for j, (title, key, key2) in enumerate((("per-token mask time, µs (bar p50, tick p99, dot 1st-pass mean)", "mask_p50_us", "mask_p99_us"),
                                                ("compile to first mask, ms (bar cold, tick new matcher)", "compile_cold_ms", "compile_warm_ms"))):
            ax = axes[i][j]
            for k, e in enumerate(engines):
                vals, vals2 = [], []
                for rn in names:
                    r = next((r for r in rows if r["vocab"] == v and r["regex"] == rn and r["engine"] == e), None)
                    vals.append(r[key] if r and r[key] is not None else np.nan)
                    vals2.append(r[key2] if r and r[key2] is not None else np.nan)
                xs = x + (k - (len(engines) - 1) / 2) * w
                ax.bar(xs, vals, w, label=e, color=colors.get(e))
                ax.scatter(xs, vals2, marker="_", s=120, color="black", zorder=3)
                if j == 0:
                    fp = [next((r["first_pass_mask_mean_us"] for r in rows if r["vocab"] == v and r["regex"] == rn
                                and r["engine"] == e), None) for rn in names]
                    ax.scatter(xs, [np.nan if f is None else f for f in fp], marker="o", s=14,
                               facecolor="white", edgecolor="black", zorder=4)
            ax.set_yscale("log")
            ax.set_xticks(x)
            ax.set_xticklabels(names, rotation=20, fontsize=8)
            ax.set_title(f"{VOCABS.get(v, (None, v))[1]}: {title}", fontsize=10)
            ax.grid(axis="y", which="both", alpha=0.3)
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"plot written to {path}", file=sys.stderr)


def machine_note() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    vers = []
    for mod, dist in (("structgen", "structgen"), ("xgrammar", "xgrammar"),
                      ("outlines_core", "outlines-core"), ("llguidance", "llguidance")):
        try:
            from importlib.metadata import version

            vers.append(f"{dist} {version(dist)}")
        except Exception:
            pass
    return (f"{cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"(threads {torch.get_num_threads()}), Python {platform.python_version()}; " + ", ".join(vers))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", default="smollm2,gemma", help="comma list of: " + ",".join(VOCABS))
    ap.add_argument("--engines", default=",".join(ENGINE_ORDER), help="comma list of engines")
    ap.add_argument("--regex", default=None, help="comma list of regex names (default: all)")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the token sequences (timing)")
    ap.add_argument("--compile-repeat", type=int, default=3,
                    help="cold compiles (median reported) and new-matcher repeats")
    ap.add_argument("--samples", type=int, default=5, help="strings per regex")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write raw results here")
    ap.add_argument("--plot", default=None, help="write a PNG plot here")
    ap.add_argument("--max-print", type=int, default=40, help="disagreements printed (all go to --json)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                    help="load vocab NAME with structgen.load_model(DIR) (a local Hugging Face model "
                         "directory) instead of the built-in model")
    args = ap.parse_args(argv)

    global REGEXES
    if args.regex:
        keep = set(args.regex.split(","))
        REGEXES = [r for r in REGEXES if r[0] in keep]
    tdirs = dict(s.split("=", 1) for s in args.model)
    wanted = [e.strip() for e in args.engines.split(",") if e.strip()]
    engines, skipped = peers.available_engines(wanted)
    for n, why in skipped.items():
        print(f"skipping {n}: {why}", file=sys.stderr)
    if not engines:
        print("no engine available", file=sys.stderr)
        return 1

    t_start = time.perf_counter()
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

    note = machine_note()
    print(f"\n<!-- {note}; total {time.perf_counter() - t_start:.0f} s -->\n")
    print(markdown(rows, setups, [e for e in ENGINE_ORDER if e in engines]))
    by_kind: Dict[str, int] = {}
    for d in dis.items:
        key = f"{d['kind']} ({d['engine']})"
        by_kind[key] = by_kind.get(key, 0) + 1
    print("Disagreements: " + (", ".join(f"{k}: {v}" for k, v in sorted(by_kind.items())) or "none"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": note, "args": vars(args), "regexes": REGEXES, "setups": setups,
                       "rows": rows, "disagreements": dis.items}, f, indent=1, default=str)
        print(f"raw results written to {args.json}", file=sys.stderr)
    if args.plot:
        plot(rows, [e for e in ENGINE_ORDER if e in engines], args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
