"""Exact byte DFAs for JSON lexemes: one string or number value of a JSON Schema instance.

A string terminal's language is every JSON spelling of every allowed *decoded* value: the
constraints (pattern, length, format, literals, excluded keys) are intersected over characters,
then each character edge is lifted to all its spellings (raw UTF-8, short escapes, `\\uXXXX` in
either hex case, surrogate pairs), so a model may escape however it likes and still be checked
exactly.

With `canonical=True` each character has exactly one spelling instead — the one
`json.dumps(value, ensure_ascii=False)` writes: raw UTF-8, `\\" \\\\ \\b \\f \\n \\r \\t`, other controls
as lowercase `\\u00xx`. Generation uses it (see `JsonSchema(spelling=...)`): keys and constants
become forced text, and a small model cannot wander into `"colo\\u0072"`. It narrows the spellings,
never the values.

Lone surrogates: Python's `json.loads` accepts `"\\ud800"` (one code point), but such a string
has no UTF-8 encoding and ECMA-262/most consumers treat it as malformed, so no lone surrogate
spelling is ever accepted (a high surrogate escape must be followed by a low one). This narrows
the language by design; it never widens it.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

import interegular
import numpy as np
from interegular.fsm import FSM, Alphabet, anything_else

from ..automata.bytedfa import (
    DEAD,
    ByteDFA,
    ByteSetSequence,
    _shape_template,
    complement_ranges,
    dfa_product,
    minimize,
    ranges_of,
    spelled_tables,
    trim,
    utf8_byte_sets,
)
from ..automata.positions import to_fsm
from ..automata.regex import regex_to_dfa
from ..automata.regex_syntax import to_interegular
from ..errors import RegexError, UnsupportedSchemaError
from .formats import COMPACT, format_language

# Byte-DFA size above which a string terminal is refused (a length counter multiplies states:
# every count needs its own partial-escape and partial-UTF-8 states, ~20 per count).
MAX_STRING_STATES = 1 << 15

Ranges = tuple[tuple[int, int], ...]
_QUOTE, _BACKSLASH = 0x22, 0x5C
_SHORT_ESCAPES = {0x22: "\"", 0x5C: "\\", 0x2F: "/", 0x08: "b", 0x0C: "f", 0x0A: "n", 0x0D: "r",
                  0x09: "t"}
_RAW = ((0x20, 0x21), (0x23, 0x5B), (0x5D, 0x10FFFF))  # unescaped: not '"', '\\', controls
_BMP = ((0x0000, 0xD7FF), (0xE000, 0xFFFF))  # \uXXXX alone: no lone surrogates
_ASTRAL = ((0x10000, 0x10FFFF),)
_HEX = [tuple(sorted({ord(c) for c in f"{v:x}{v:X}"})) for v in range(16)]
_U_PREFIX: ByteSetSequence = ((_BACKSLASH,), (ord("u"),))


def _intersect(a: Ranges, b: Ranges) -> list[tuple[int, int]]:
    out = []
    for lo, hi in a:
        for lo2, hi2 in b:
            if max(lo, lo2) <= min(hi, hi2):
                out.append((max(lo, lo2), min(hi, hi2)))
    return out


def _digit_ranges(lo: int, hi: int, digits: int) -> list[tuple[tuple[int, int], ...]]:
    """Split lo..hi into sequences of per-hex-digit ranges (most significant first)."""
    if digits == 1:
        return [((lo, hi),)]
    shift = 4 * (digits - 1)
    mask = (1 << shift) - 1
    top_lo, top_hi = lo >> shift, hi >> shift
    if top_lo == top_hi:
        return [((top_lo, top_lo),) + rest for rest in _digit_ranges(lo & mask, hi & mask, digits - 1)]
    out = []
    if lo & mask:
        out += _digit_ranges(lo, lo | mask, digits)
        top_lo += 1
    tail = []
    if hi & mask != mask:
        tail = _digit_ranges(hi & ~mask, hi, digits)
        top_hi -= 1
    if top_lo <= top_hi:
        out.append(((top_lo, top_hi),) + ((0, 15),) * (digits - 1))
    return out + tail


def _hex_spellings(lo: int, hi: int) -> list[ByteSetSequence]:
    """The four hex digits (either case) of every 16-bit value in lo..hi."""
    return [
        tuple(tuple(b for v in range(a, z + 1) for b in _HEX[v]) for a, z in seq)
        for seq in _digit_ranges(lo, hi, 4)
    ]


@lru_cache(maxsize=4096)
def json_char_spellings(ranges: Ranges) -> list[ByteSetSequence]:
    """Every byte spelling, inside a JSON string, of the characters in `ranges`.

    Raw UTF-8 (not for '"', '\\' and controls), short escapes, `\\uXXXX` for BMP characters and a
    `\\uD8xx\\uDCxx` pair for astral ones. Surrogate code points get no spelling (see module doc).
    """
    out: list[ByteSetSequence] = []
    for lo, hi in _intersect(ranges, _RAW):
        out += utf8_byte_sets(lo, hi)
    for cp, letter in _SHORT_ESCAPES.items():
        if any(lo <= cp <= hi for lo, hi in ranges):
            out.append(((_BACKSLASH,), (ord(letter),)))
    for lo, hi in _intersect(ranges, _BMP):
        out += [_U_PREFIX + seq for seq in _hex_spellings(lo, hi)]
    for lo, hi in _intersect(ranges, _ASTRAL):
        # split the 20-bit offset into (high 10 bits, low 10 bits) blocks
        v_lo, v_hi = lo - 0x10000, hi - 0x10000
        pairs = []
        if v_lo >> 10 == v_hi >> 10:
            pairs.append((v_lo >> 10, v_lo >> 10, v_lo & 0x3FF, v_hi & 0x3FF))
        else:
            first, last = v_lo >> 10, v_hi >> 10
            if v_lo & 0x3FF:
                pairs.append((first, first, v_lo & 0x3FF, 0x3FF))
                first += 1
            if v_hi & 0x3FF != 0x3FF:
                pairs.append((last, last, 0, v_hi & 0x3FF))
                last -= 1
            if first <= last:
                pairs.append((first, last, 0, 0x3FF))
        for h_lo, h_hi, l_lo, l_hi in pairs:
            highs = _hex_spellings(0xD800 + h_lo, 0xD800 + h_hi)
            lows = _hex_spellings(0xDC00 + l_lo, 0xDC00 + l_hi)
            out += [_U_PREFIX + h + _U_PREFIX + lw for h in highs for lw in lows]
    return out


_CANONICAL_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n",
                      0x0D: "\\r", 0x09: "\\t"}


@lru_cache(maxsize=4096)
def json_char_spellings_canonical(ranges: Ranges) -> list[ByteSetSequence]:
    """The one spelling `json.dumps(..., ensure_ascii=False)` gives each character in `ranges`."""
    out: list[ByteSetSequence] = []
    for lo, hi in _intersect(ranges, _RAW):
        out += utf8_byte_sets(lo, hi)
    for lo, hi in _intersect(ranges, ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C))):
        for cp in range(lo, hi + 1):
            text = _CANONICAL_ESCAPES.get(cp, f"\\u{cp:04x}")
            out.append(tuple((b,) for b in text.encode()))
    return out


# --- character DFAs ---------------------------------------------------------------------------

CharDFA = tuple[int, int, frozenset, dict]  # (n_states, initial, finals, {state: [(ranges, t)]})


def _char_dfa(fsm: FSM, classes: dict[str, Ranges] | None = None) -> CharDFA:
    """An interegular FSM as a DFA over code point ranges (multi-character symbols never match).

    `classes` maps placeholder characters to the code point ranges they stand for: a huge class
    (every IRI character) spelled as one character keeps interegular from enumerating it."""
    by_symbol: dict[int, list[int]] = {}
    explicit: list[int] = []
    other = None
    for char, symbol in fsm.alphabet._symbol_mapping.items():
        if char is anything_else:
            other = symbol
        elif len(char) == 1:
            by_symbol.setdefault(symbol, []).append(ord(char))
            explicit.append(ord(char))
    symbol_ranges = {}
    for sym, cps in by_symbol.items():
        extra = [r for c in cps if classes and chr(c) in classes for r in classes[chr(c)]]
        kept = [c for c in cps if not (classes and chr(c) in classes)]
        symbol_ranges[sym] = tuple(_merge_ranges(ranges_of(kept) + extra))
    if other is not None:
        symbol_ranges[other] = tuple(complement_ranges(ranges_of(explicit)))
    index = {s: i for i, s in enumerate(sorted(fsm.states))}
    edges: dict[int, list] = {}
    for s in fsm.states:
        merged: dict[int, list] = {}
        for sym, t in fsm.map.get(s, {}).items():
            merged.setdefault(index[t], []).extend(symbol_ranges.get(sym, ()))
        edges[index[s]] = [(tuple(_merge_ranges(r)), t) for t, r in merged.items() if r]
    return len(index), index[fsm.initial], frozenset(index[s] for s in fsm.finals), edges


def _char_product(a: CharDFA, b: CharDFA) -> CharDFA:
    """Intersection of two character DFAs (pairs of states reachable from the initial pair)."""
    index = {(a[1], b[1]): 0}
    order = [(a[1], b[1])]
    edges: dict[int, list] = {}
    k = 0
    while k < len(order):
        p, q = order[k]
        edges[k] = []
        for ra, ta in a[3].get(p, ()):
            for rb, tb in b[3].get(q, ()):
                common = tuple(_intersect(ra, rb))
                if common:
                    if (ta, tb) not in index:
                        index[(ta, tb)] = len(order)
                        order.append((ta, tb))
                    edges[k].append((common, index[(ta, tb)]))
        k += 1
    finals = frozenset(i for i, (p, q) in enumerate(order) if p in a[2] and q in b[2])
    return len(order), 0, finals, edges


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged union of inclusive ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _length_range(dfa: CharDFA) -> tuple[int | None, int | None]:
    """(shortest, longest) length of the strings `dfa` accepts: (None, None) when it accepts
    none, longest None when unbounded (a cycle on a path from the start to acceptance)."""
    n, initial, finals, edges = dfa
    succ = {s: {t for _, t in es} for s, es in edges.items()}
    preds: dict[int, set] = {}
    for s, ts in succ.items():
        for t in ts:
            preds.setdefault(t, set()).add(s)
    live = set(finals)
    stack = list(finals)
    while stack:
        for s in preds.get(stack.pop(), ()):
            if s not in live:
                live.add(s)
                stack.append(s)
    if initial not in live:
        return None, None
    depth = {initial: 0}  # BFS: shortest distances over live states
    frontier = [initial]
    while frontier:
        nxt = []
        for s in frontier:
            for t in succ.get(s, ()):
                if t in live and t not in depth:
                    depth[t] = depth[s] + 1
                    nxt.append(t)
        frontier = nxt
    shortest = min(depth[f] for f in finals if f in depth)
    # longest: Kahn's algorithm over the live reachable subgraph; a leftover state means a cycle
    nodes = set(depth)
    indegree = {s: 0 for s in nodes}
    for s in nodes:
        for t in succ.get(s, ()):
            if t in nodes:
                indegree[t] += 1
    order = [s for s in nodes if indegree[s] == 0]
    longest_to = {s: 0 for s in nodes}
    k = 0
    while k < len(order):
        s = order[k]
        k += 1
        for t in succ.get(s, ()):
            if t in nodes:
                longest_to[t] = max(longest_to[t], longest_to[s] + 1)
                indegree[t] -= 1
                if indegree[t] == 0:
                    order.append(t)
    if len(order) < len(nodes):
        return shortest, None
    return shortest, max(longest_to[f] for f in finals if f in nodes)


def _with_length(dfa: CharDFA, min_length: int, max_length: int | None, limit: int) -> CharDFA:
    """Product with a code point counter: 0..max_length, or saturating at min_length.

    Only reachable (state, count) pairs are built (a format reaches each state at few counts);
    OverflowError past `limit` of them."""
    n, initial, finals, edges = dfa
    cap = max_length if max_length is not None else min_length
    index = {(initial, 0): 0}
    order = [(initial, 0)]
    out: dict[int, list] = {}
    k = 0
    while k < len(order):
        q, count = order[k]
        nxt = min(count + 1, cap)
        out[k] = []
        if max_length is None or count < max_length:
            for ranges, t in edges.get(q, ()):
                key = (t, nxt)
                if key not in index:
                    if len(order) >= limit:
                        raise OverflowError(f"more than {limit} (state, length) pairs")
                    index[key] = len(order)
                    order.append(key)
                out[k].append((ranges, index[key]))
        k += 1
    finals_out = frozenset(i for i, (q, c) in enumerate(order) if q in finals and c >= min_length)
    return len(order), 0, finals_out, out


# --- patterns (ECMA-262 search semantics) ------------------------------------------------------

_ECMA_DOT = "[^\\n\\r\\u2028\\u2029]"  # ECMA '.' excludes all four line terminators
# ECMA-262 \s ∩ Python's Unicode \s (ECMA adds U+FEFF; Python adds U+001C-U+001F, U+0085)
_SPACES = "\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"


def _ecma_escape(pair: str, in_class: bool) -> str:
    """One two-character escape, rewritten where ECMA-262 and Python differ."""
    if pair == "\\s":
        return _SPACES if in_class else "[" + _SPACES + "]"
    return pair


_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")
# spaces of either dialect: Python's Unicode \s and ECMA-262's (which adds U+FEFF)
_ANY_SPACE = [chr(c) for c in range(0x3001) if re.match(r"\s", chr(c))] + ["\ufeff"]


def _nonspace_class(body: str, pattern: str) -> str:
    """A positive class with '\\S' among its members, as the characters both ECMA-262 and Python
    put in it: everything except the spaces (of either dialect) its other members miss."""
    rest = re.sub(r"\\.", lambda e: "" if e.group(0) == "\\S" else e.group(0), body)
    if re.search(r"(?<!\\)(?:\\\\)*\\s", rest):
        return "(?s:.)"  # [\s\S]: every character in both dialects
    try:
        kept = [c for c in _ANY_SPACE if not (rest and re.fullmatch(f"[{rest}]", c))]
    except re.error as e:
        raise UnsupportedSchemaError("pattern", f"invalid class in {pattern!r}: {e}") from None
    return "[^" + "".join(f"\\u{ord(c):04x}" for c in kept) + "]" if kept else "(?s:.)"


def _ecma_alternatives(pattern: str) -> tuple[str, list[tuple[str, bool, bool]]]:
    """Split a pattern into top-level alternatives (leading_flags, [(body, ^, $)]).

    Rewrites on the way what Python reads wider than ECMA-262, so the result is within both
    (jsonschema checks with Python `re`): '.' also excludes '\\r', U+2028, U+2029; '\\S' and
    '[^\\s...]' also exclude U+FEFF (an ECMA space, not a Python one); '\\s' is the spaces both
    agree on; a positive class with '\\S' excludes the spaces of either dialect it misses.
    `{,n}` (a literal in ECMA-262, a repeat in Python) is refused. ECMA named groups `(?<name>...)`
    and control escapes `\\cX` get Python's spelling.
    """
    flags = ""
    m = _FLAGS.match(pattern)
    if m:
        flags, pattern = m.group(0), pattern[m.end():]
    alts: list[tuple[str, bool, bool]] = []
    cur: list[str] = []
    depth = 0
    i, n = 0, len(pattern)

    def close_alt() -> None:
        toks = list(cur)
        start = bool(toks) and toks[0] == "^"
        if start:
            toks = toks[1:]
        end = bool(toks) and toks[-1] == "$"
        if end:
            toks = toks[:-1]
        alts.append(("".join(toks), start, end))
        cur.clear()

    while i < n:
        c = pattern[i]
        if c == "\\" and pattern[i + 1 : i + 2] == "c" and pattern[i + 2 : i + 3].isalpha():
            cur.append(f"\\x{ord(pattern[i + 2]) % 32:02x}")  # ECMA control escape \cX
            i += 3
        elif c == "\\" and i + 1 < n:
            pair = pattern[i : i + 2]
            cur.append("[^\\s\\ufeff]" if pair == "\\S" else _ecma_escape(pair, False))
            i += 2
        elif c == "[":
            j = i + 1
            negated = j < n and pattern[j] == "^"
            j += negated
            body_start = j
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            body = pattern[body_start:j]
            escapes = re.findall(r"\\(.)", body)
            if "S" in escapes and not negated:
                cur.append(_nonspace_class(body, pattern))
                i = j + 1
                continue
            if negated and "s" in escapes:
                body += "\\ufeff"
            elif not negated:
                body = re.sub(r"\\c([A-Za-z])", lambda e: f"\\x{ord(e.group(1)) % 32:02x}", body)
                body = re.sub(r"\\.", lambda e: _ecma_escape(e.group(0), True), body)
                if re.search(r"(?<!\\)(?:\\\\)*-$", body):  # a literal '-' last stays literal
                    body = body[:-1] + "\\x2d"
            cur.append("[" + ("^" if negated else "") + body + "]")
            i = j + 1
        elif c == ".":
            cur.append(_ECMA_DOT)
            i += 1
        elif c == "{" and re.match(r"\{,\d*\}", pattern[i:]):
            raise UnsupportedSchemaError(
                "pattern", f"{pattern!r}: '{{,n}}' is a literal in ECMA-262 but a repeat in Python")
        elif pattern.startswith("(?<", i) and pattern[i + 3 : i + 4] not in ("=", "!"):
            cur.append("(?P<")  # ECMA named group, Python spelling
            depth += 1
            i += 3
        elif c == "|" and depth == 0:
            close_alt()
            i += 1
        else:
            depth += (c == "(") - (c == ")")
            cur.append(c)
            i += 1
    close_alt()
    return flags, alts


@lru_cache(maxsize=256)
def _group_body(text: str) -> str | None:
    """The inside of `text` when all of it is one plain, non-capturing or named group."""
    m = re.match(r"\((?:\?:|\?P<\w+>)?", text)
    if not m or text[m.end() : m.end() + 1] == "?":
        return None
    depth, i = 0, 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 2 if text[i + 1 : i + 2] in ("^", "]") else 1
            while i < len(text) and text[i] != "]":
                i += 2 if text[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[m.end() : i] if i == len(text) - 1 else None
        i += 1
    return None


def _anchored(body: str, start: bool, end: bool) -> list[tuple[str, bool, bool]]:
    """Alternatives with their anchors, looking inside a group that spans the whole alternative
    (`(^a|b$)`, `^(a$|b)`): anchors there are at the ends too."""
    inner = _group_body(body)
    if inner is None:
        return [(body, start, end)]
    return [alt for b, s, e in _ecma_alternatives(inner)[1] for alt in _anchored(b, start or s, end or e)]


@lru_cache(maxsize=256)
def pattern_fsm(pattern: str) -> FSM:
    """Character FSM of the strings in which `pattern` finds a match (JSON Schema semantics).

    Alternatives with the same anchoring share one search (`.*(?:a|b|c).*`, not a union of
    three searches, whose determinization blows up on long keyword lists)."""
    flags, alts = _ecma_alternatives(pattern)
    by_anchors: dict[tuple[bool, bool], list[str]] = {}
    for body, start, end in (a for alt in alts for a in _anchored(*alt)):
        by_anchors.setdefault((start, end), []).append(body)
    parts = []
    try:
        for (start, end), bodies in by_anchors.items():
            core = "|".join(f"(?:{to_interegular(flags + body)})" for body in bodies)
            parts.append(("" if start else "(?s:.)*") + f"(?:{core})" + ("" if end else "(?s:.)*"))
        return to_fsm(interegular.parse_pattern("|".join(f"(?:{p})" for p in parts)))
    except RegexError as e:
        raise UnsupportedSchemaError("pattern", str(e)) from None
    except Exception as e:  # interegular's parser errors have no stable type
        raise UnsupportedSchemaError(
            "pattern", f"cannot compile {pattern!r}: {type(e).__name__}: {e}") from None


def _literals_fsm(values: Sequence[str]) -> FSM:
    """FSM of exactly the given strings (a trie; every other character is its own key)."""
    chars = sorted({ch for v in values for ch in v})
    alphabet = Alphabet({**{ch: i for i, ch in enumerate(chars)}, anything_else: len(chars)})
    key = {ch: i for i, ch in enumerate(chars)}
    transitions: dict[int, dict[int, int]] = {0: {}}
    finals = set()
    for v in values:
        node = 0
        for ch in v:
            nxt = transitions[node].get(key[ch])
            if nxt is None:
                nxt = len(transitions)
                transitions[node][key[ch]] = nxt
                transitions[nxt] = {}
            node = nxt
        finals.add(node)
    return FSM(alphabet, set(transitions), 0, finals, transitions)


def _quoted(tables: tuple[np.ndarray, np.ndarray] | None) -> ByteDFA:
    """'"' body '"' from the body's trimmed arrays (initial state 0), so the result is trimmed."""
    if tables is None:
        return _EMPTY
    body, body_accepting = tables
    n = body.shape[0]
    table = np.full((n + 2, 256), DEAD, np.int32)
    table[0, _QUOTE] = 1
    table[1 : n + 1] = np.where(body >= 0, body + 1, DEAD)
    table[1 : n + 1][body_accepting, _QUOTE] = n + 1
    accepting = np.zeros(n + 2, bool)
    accepting[n + 1] = True
    return ByteDFA(table, accepting, 0)


_EMPTY = ByteDFA(np.full((1, 256), DEAD, np.int32), np.zeros(1, bool), DEAD)


def _literals_dfa(literals: Sequence[str], canonical: bool) -> ByteDFA | None:
    """'"' + every spelling of one of `literals` + '"': the language of `_string_dfa`'s general
    construction for the same literals, built directly (`_literals_table`); None where that
    construction is needed: a character without a spelling (a lone surrogate), or more than
    MAX_STRING_STATES states (it then refuses)."""
    table = _literals_table(literals, canonical)
    if table is None:
        return None
    accepting = np.zeros(table.shape[0], bool)
    accepting[-1] = True
    return ByteDFA(table, accepting, 0)


def _literals_table(literals: Sequence[str], canonical: bool) -> np.ndarray | None:
    """Transitions of `_literals_dfa` (initial state 0, the last state the only accepting one:
    after the closing quote); see `json_literals_edges`."""
    edges = json_literals_edges(literals, canonical)
    if edges is None:
        return None
    n, rows, cols, vals = edges
    table = np.full((n, 256), DEAD, np.int32)
    table[rows, cols] = vals
    return table


def json_literals_edges(literals: Sequence[str], canonical: bool = False
                        ) -> tuple[int, list[int], list[int], list[int]] | None:
    """The DFA of every spelling of one of `literals`, quotes included (`json_string_dfa(
    literals=...)`'s language), as (number of states, and the sources, bytes and targets of
    its transitions): state 0 reads the opening quote, the last state (after the closing
    quote) is the only accepting one, every state is live. Built from the values' character
    trie with one spelling template per trie node (`spelled_tables`' templates, stamped in
    Python: they are sparse). None where a character has no spelling (a lone surrogate), or
    beyond MAX_STRING_STATES states."""
    children: list[dict[str, int]] = [{}]
    finals = []
    for v in literals:
        node = 0
        for ch in v:
            kids = children[node]
            nxt = kids.get(ch)
            if nxt is None:
                nxt = kids[ch] = len(children)
                children.append({})
            node = nxt
        finals.append(node)
    n = len(children)
    # state 0 reads the opening quote, 1..n are the trie nodes, then each node's partial
    # spelling states in node order, and last the state after the closing quote
    rows: list[int] = [0]
    cols: list[int] = [_QUOTE]
    vals: list[int] = [1]
    base = n + 1  # global state of the current node's local row 1
    for k, kids in enumerate(children):
        chars = tuple(sorted(kids))
        entries = _node_entries(chars, canonical)
        if entries is None:
            return None
        size, local = entries
        for r, c, v in local:
            rows.append(k + 1 if r == 0 else base + r - 1)
            cols.append(c)
            vals.append(base + v - 1 if v >= 1 else kids[chars[-2 - v]] + 1)
        base += size - 1
    total = base  # the closing quote's state
    if total + 1 > MAX_STRING_STATES:
        return None
    for node in finals:
        rows.append(node + 1)
        cols.append(_QUOTE)
        vals.append(total)
    return total + 1, rows, cols, vals


def _excluded_dfa(exclude: Sequence[str], canonical: bool) -> ByteDFA | None:
    """Every JSON string except the spellings of `exclude`: the difference of the any-string
    DFA A and the excluded values' DFA K (`_literals_dfa`, K ⊆ A), without a product search.

    Reading a spelling prefix that K still follows, A is in one state determined by K's
    state (found along K's edges; where it would not be, None: the general construction is
    used), so the difference is K's states (less its closing-quote state: an excluded value
    is complete) each completed by A's row — a byte K does not read leaves the excluded
    values for good and continues in a copy of A — then that copy of A. None also where
    `_literals_dfa` is."""
    kt = _literals_table(exclude, canonical)
    if kt is None:
        return None
    a_dfa = json_string_dfa(canonical=canonical)
    at = a_dfa.transitions
    n_k = kt.shape[0] - 1  # K's last state is after the closing quote (see _literals_dfa)
    a_rows = a_dfa.rows
    src, byte = np.nonzero(kt >= 0)  # K's edges, by source state
    out: list[list[tuple[int, int]]] = [[] for _ in range(n_k + 1)]
    for k, b, k2 in zip(src.tolist(), byte.tolist(), kt[src, byte].tolist()):
        out[k].append((b, k2))
    a_of = [DEAD] * (n_k + 1)
    a_of[0] = a_dfa.initial
    todo = [0]
    while todo:  # A's state for each of K's states, along K's edges
        k = todo.pop()
        a_row = a_rows[a_of[k]]
        for b, k2 in out[k]:
            a2 = a_row[b]
            if a2 < 0:
                return None  # (cannot happen: K ⊆ A)
            if a_of[k2] == DEAD:
                a_of[k2] = a2
                todo.append(k2)
            elif a_of[k2] != a2:
                return None
    a_idx = np.array(a_of[:n_k], np.int64)
    table = np.empty((n_k + at.shape[0], 256), np.int32)
    table[n_k:] = np.where(at >= 0, at + n_k, DEAD)
    table[:n_k] = table[n_k + a_idx]
    inside = kt[:n_k] >= 0
    table[:n_k][inside] = np.where(kt[:n_k][inside] == n_k, DEAD, kt[:n_k][inside])
    accepting = np.concatenate([a_dfa.accepting[a_idx],  # (K accepts only after its quote)
                                a_dfa.accepting])
    return ByteDFA(table, accepting, 0)


@lru_cache(maxsize=4096)
def _node_entries(chars: tuple[str, ...], canonical: bool
                  ) -> tuple[int, tuple[tuple[int, int, int], ...]] | None:
    """(rows, non-dead (row, byte, entry) triples) of the spelling template of a state whose
    edges read `chars` (see `bytedfa._spelling_template`); None when a character has no
    spelling."""
    spell = json_char_spellings_canonical if canonical else json_char_spellings
    shape = tuple(((ord(c), ord(c)),) for c in chars)
    if not all(spell(r) for r in shape):
        return None
    tpl = _shape_template(shape, spell)
    r, c = np.nonzero(tpl != DEAD)
    return tpl.shape[0], tuple(zip(r.tolist(), c.tolist(), tpl[r, c].tolist()))


def json_string_dfa(*, pattern: str | None = None, min_length: int = 0,
                    max_length: int | None = None, format: str | None = None,
                    literals: Sequence[str] | None = None, exclude: Sequence[str] = (),
                    canonical: bool = False) -> ByteDFA:
    """The bytes of one complete JSON string (with its quotes) whose decoded value matches
    `pattern` (unanchored ECMA-262 search), has min_length..max_length code points, satisfies
    `format`, is one of `literals` when given and none of `exclude`.

    Every JSON spelling of such a value is accepted (see the module doc; lone surrogates never),
    or with `canonical` only the one `json.dumps(value, ensure_ascii=False)` writes.
    Returns an empty DFA (`is_empty()`) when no string qualifies. Raises UnsupportedSchemaError
    naming "pattern", "format", "maxLength" or "minLength" when it cannot be exact.
    """
    return _json_string_dfa(
        pattern, int(min_length), None if max_length is None else int(max_length), format,
        None if literals is None else tuple(sorted(set(literals))), tuple(sorted(set(exclude))),
        bool(canonical))


@lru_cache(maxsize=512)
def _json_string_dfa(pattern: str | None, min_length: int, max_length: int | None,
                     format: str | None, literals: tuple[str, ...] | None,
                     exclude: tuple[str, ...], canonical: bool) -> ByteDFA:
    try:
        return _string_dfa(pattern, min_length, max_length, format, literals, exclude, False,
                           canonical)
    except UnsupportedSchemaError as e:
        if format not in COMPACT or e.keyword not in ("maxLength", "minLength"):
            raise
        # documented narrowing (formats.COMPACT) rather than refusing the length bound
        return _string_dfa(pattern, min_length, max_length, format, literals, exclude, True,
                           canonical)


def _string_dfa(pattern: str | None, min_length: int, max_length: int | None,
                format: str | None, literals: tuple[str, ...] | None,
                exclude: tuple[str, ...], compact: bool, canonical: bool) -> ByteDFA:
    if literals is not None and pattern is None and format is None:
        # keys and enums: a trie of the values, spelled directly (no regex machinery)
        kept = [v for v in literals if v not in exclude and min_length <= len(v)
                and (max_length is None or len(v) <= max_length)]
        fast = _literals_dfa(kept, canonical) if kept else _EMPTY
        if fast is not None:
            return fast
    if (exclude and literals is None and pattern is None and format is None and min_length == 0
            and max_length is None):
        # any key but the named ones (additional properties)
        fast = _excluded_dfa(exclude, canonical)
        if fast is not None:
            return fast
    fsms: list[FSM] = []
    if pattern is not None:
        fsms.append(pattern_fsm(pattern))
    if literals is not None:
        fsms.append(_literals_fsm(literals))
    char_dfa: CharDFA | None = None
    if fsms:
        core = fsms[0] if len(fsms) == 1 else FSM.intersection(*fsms)
        if exclude:
            core = FSM.difference(core, _literals_fsm(exclude))
        char_dfa = _char_dfa(core)
    elif exclude:
        char_dfa = _char_dfa(_literals_fsm(exclude).everythingbut())
    if format is not None:
        fsm, format_max, classes = format_language(format, compact)
        format_dfa = _char_dfa(fsm, classes)
        char_dfa = format_dfa if char_dfa is None else _char_product(char_dfa, format_dfa)
        if format_max is not None and (max_length is None or format_max < max_length):
            max_length = format_max
    if char_dfa is None:
        char_dfa = (1, 0, frozenset([0]), {0: [(((0, 0x10FFFF),), 0)]})
    if min_length > 0 or max_length is not None:
        if max_length is not None and max_length < min_length:
            return _EMPTY
        shortest, longest = _length_range(char_dfa)
        if shortest is None:
            return _EMPTY
        # drop bounds every value already meets: no counter, no state blow-up
        if min_length <= shortest:
            min_length = 0
        if max_length is not None and longest is not None and longest <= max_length:
            max_length = None
    if min_length > 0 or max_length is not None:
        try:
            char_dfa = _with_length(char_dfa, min_length, max_length, MAX_STRING_STATES)
        except OverflowError:
            bound = max_length if max_length is not None else min_length
            raise UnsupportedSchemaError(
                "maxLength" if max_length is not None else "minLength",
                f"a length bound of {bound} code points needs more than {MAX_STRING_STATES} "
                "automaton states to enforce exactly") from None
    n, initial, finals, edges = char_dfa
    try:
        spellings = json_char_spellings_canonical if canonical else json_char_spellings
        dfa = _quoted(spelled_tables(n, initial, finals, edges, spellings,
                                     max_states=MAX_STRING_STATES))
    except OverflowError as e:
        keyword = ("maxLength" if max_length is not None else "minLength" if min_length else
                   "pattern" if pattern is not None else "format")
        raise UnsupportedSchemaError(keyword, f"too large to enforce exactly: {e}") from None
    if format is None and pattern is None:
        return dfa
    # Patterns and formats: every character state gets its own copies of the escape spellings'
    # partial states, most of them equivalent (uri-reference 11,378 -> 1,177 states, date-time
    # 10,105 -> 5,278). Each state left costs the grammar per-terminal tables and mask splits.
    return minimize(dfa.transitions, dfa.accepting, dfa.initial)


# --- numbers ------------------------------------------------------------------------------------
#
# A JSON number is mantissa × 10^exponent. Reading left to right, the mantissa comes before the
# exponent that scales it, so a bound (or multipleOf) is checked for every exponent in a window
# at once: the state holds one comparator per exponent e, comparing the mantissa with bound/10^e.
# Constraints that do not depend on the exponent (no bound, a bound of 0, "integer" alone) accept
# exponents of any size. Spellings rejected although valid (false negatives, never false
# positives):
#   - with a nonzero bound: an exponent outside -EXP_WINDOW..EXP_WINDOW (leading zeros in the
#     exponent are fine: 1e+002 is exponent 2);
#   - with multipleOf: every exponent form (2e1 for multipleOf 5): one residue automaton per
#     exponent would multiply states;
#   - "integer" without bounds or multipleOf: a mantissa with more than MAX_FRACTION_DIGITS
#     fraction digits up to its last nonzero one (1.000000000000000001e30), or an exponent
#     below -(MAX_FRACTION_DIGITS + 1) (1000...0e-30);
#   - "integer" with a nonzero bound: a negative exponent (100e-2).
#   None of these applies to a zero mantissa: 0e5, -0.0E-99 are accepted whenever 0 is allowed.
# multipleOf is exact for any decimal m = p / 10^s with p <= MAX_MODULUS (residues mod p).

EXP_WINDOW = 8
MAX_MODULUS = 10_000
MAX_FRACTION_DIGITS = 17
_LT, _EQ, _GT = -1, 0, 1


def _exponent_window(integer: bool, exponents: bool) -> range:
    """The exponents a bounded number may take: the window, of which an "integer" takes no
    negative one (its threshold rule), or 0 alone without exponents."""
    return range(0 if integer else -EXP_WINDOW, EXP_WINDOW + 1) if exponents else range(1)


def _decimal(value: object, keyword: str) -> Decimal:
    """A schema number as an exact Decimal (floats via their shortest repr, i.e. the JSON text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise UnsupportedSchemaError(keyword, f"{value!r} is not a number")
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not d.is_finite():
        raise UnsupportedSchemaError(keyword, f"{value!r} is not a finite number")
    return d


def _digits(b: Decimal) -> tuple[str, str]:
    """|b| as (integer digits, fraction digits without trailing zeros)."""
    text = format(abs(b), "f")
    whole, _, frac = text.partition(".")
    return whole.lstrip("0") or "0", frac.rstrip("0")


class _Magnitude:
    """Compares |mantissa| with |b| digit by digit. States: ('i', digits read, relation) in the
    integer part, ('f', fraction digits read, relation) after the point."""

    def __init__(self, b: Decimal) -> None:
        self.whole, self.frac = _digits(b)

    def int_digit(self, st: tuple, d: str) -> tuple:
        _, k, rel = st
        if k >= len(self.whole):
            return ("i", len(self.whole) + 1, _GT)
        if rel == _EQ:
            rel = (d > self.whole[k]) - (d < self.whole[k])
        return ("i", k + 1, rel)

    def point(self, st: tuple) -> tuple:
        _, k, rel = st
        n = len(self.whole)
        return ("f", 0, _LT if k < n else _GT if k > n else rel)

    def frac_digit(self, st: tuple, d: str) -> tuple:
        _, j, rel = st
        if rel != _EQ:
            return ("f", 0, rel)
        fd = self.frac[j] if j < len(self.frac) else "0"
        rel = (d > fd) - (d < fd)
        # (once decided, the position no longer matters: one state per relation)
        return ("f", min(j + 1, len(self.frac)) if rel == _EQ else 0, rel)

    def result(self, st: tuple) -> int:
        phase, k, rel = st
        if phase == "i":
            n = len(self.whole)
            return _LT if k < n else _GT if k > n else (rel if rel != _EQ or not self.frac else _LT)
        return _LT if rel == _EQ and k < len(self.frac) else rel


class _Modulus:
    """x is a multiple of p / 10^s: x·10^s is an integer ≡ 0 (mod p). State (residue, fraction
    digits read); a nonzero digit beyond the s-th fraction digit fails (None)."""

    def __init__(self, m: Fraction) -> None:
        s = 0
        while (m * 10**s).denominator != 1:
            s += 1
        self.p, self.s = int(m * 10**s), s

    def int_digit(self, st: tuple, d: str) -> tuple:
        return ((st[0] * 10 + int(d)) % self.p, 0)

    def frac_digit(self, st: tuple, d: str) -> tuple | None:
        r, f = st
        if f < self.s:
            return ((r * 10 + int(d)) % self.p, f + 1)
        return st if d == "0" else None

    def ok(self, st: tuple) -> bool:
        r, f = st
        return r * 10 ** (self.s - f) % self.p == 0


def _signed(neg: bool, zero: bool, rel_abs: int, bound: Decimal) -> int:
    """Sign of x - bound from x's sign, zero-ness and |x| compared with |bound|."""
    sx = 0 if zero else (-1 if neg else 1)
    sb = (bound > 0) - (bound < 0)
    if sx != sb:
        return (sx > sb) - (sx < sb)
    return 0 if sx == 0 else (rel_abs if sx > 0 else -rel_abs)


class _NumberSpec:
    """The checks of one number terminal: exponent-independent ones, one pair of bound
    comparators per exponent in the window, one residue tracker (exponent 0 only) for
    multipleOf, and the fraction/trailing-zero counters that decide "integer" for any exponent."""

    def __init__(self, integer: bool, lo: tuple[Decimal, bool] | None,
                 hi: tuple[Decimal, bool] | None, modulus: Fraction | None,
                 exponents: bool = True) -> None:
        """`exponents`: whether numbers may have an exponent part (without one, the window is
        exponent 0 alone: 17 times fewer comparators to step)."""
        self.lo, self.hi = lo, hi
        self.mod = _Modulus(modulus) if modulus is not None else None
        self.exponents = exponents
        self.dependent = bool(modulus is not None or (lo and lo[0] != 0) or (hi and hi[0] != 0))
        exponents_read = _exponent_window(integer, exponents and modulus is None)
        self.window: list[tuple[int, _Magnitude | None, _Magnitude | None]] = []
        if self.dependent:
            for e in exponents_read:
                scale = Decimal(1).scaleb(-e)
                self.window.append((
                    e,
                    _Magnitude(lo[0] * scale) if lo and lo[0] != 0 else None,
                    _Magnitude(hi[0] * scale) if hi and hi[0] != 0 else None,
                ))
        # "integer" alone (a multipleOf modulus already implies it): count fraction digits up to
        # the last nonzero one and the integer part's trailing zeros, up to `cap`.
        self.integer = integer and modulus is None
        # (without exponents a nonzero fraction digit is final: no count past one)
        self.cap = ((EXP_WINDOW if self.dependent else MAX_FRACTION_DIGITS) + 1 if exponents
                    else 1)

    def bounds_ok(self, neg: bool, zero: bool, rel_lo: int, rel_hi: int) -> bool:
        if self.lo is not None:
            c = _signed(neg, zero, rel_lo, self.lo[0])
            if c < 0 or (c == 0 and self.lo[1]):
                return False
        if self.hi is not None:
            c = _signed(neg, zero, rel_hi, self.hi[0])
            if c > 0 or (c == 0 and self.hi[1]):
                return False
        return True


def _may_pass(spec: _NumberSpec, neg: bool, lo: _Magnitude | None, ls: tuple,
              hi: _Magnitude | None, hs: tuple) -> bool:
    """Whether a nonzero mantissa in its fraction part may still meet both bounds (a decided
    comparison is final there; an undecided one may still end below, equal or above)."""
    lo_rels = (ls[2],) if ls is not None and ls[2] != _EQ else (_LT, _EQ, _GT)
    hi_rels = (hs[2],) if hs is not None and hs[2] != _EQ else (_LT, _EQ, _GT)
    return any(spec.bounds_ok(neg, False, a, b) for a in lo_rels for b in hi_rels)


_EXPONENT_READ = ("X", ("end",), "+", 0, True)  # an exponent in the window, nothing more


def _number_table(spec: _NumberSpec) -> ByteDFA:
    """BFS over hashable states: (phase 'S'|'M'|'Z'|'I'|'P'|'F', negative, zero so far,
    (fraction digits read, last nonzero fraction position, integer trailing zeros),
    per-exponent comparator states, residue), then ('X', allowed exponents, exponent sign,
    exponent value so far, digit seen) after 'e'."""
    cap = spec.cap
    mod = spec.mod
    comp_steps: dict[tuple, tuple] = {}
    lo_sign = 0 if spec.lo is None else (spec.lo[0] > 0) - (spec.lo[0] < 0)
    hi_sign = 0 if spec.hi is None else (spec.hi[0] > 0) - (spec.hi[0] < 0)
    start = ("S", False, True, (0, 0, 0),
             tuple((lo and ("i", 0, _EQ), hi and ("i", 0, _EQ)) for _, lo, hi in spec.window),
             mod and (0, 0))

    # Once the sign is read, a comparator whose bound has the other sign decides nothing for a
    # nonzero value (the signs do): None from then on, so that states differing only in it
    # are one (for negative numbers under a positive maximum, say).
    signed = {neg: tuple((ls if lo is None or (lo_sign > 0) != neg else None,
                          hs if hi is None or (hi_sign > 0) != neg else None)
                         for (_, lo, hi), (ls, hs) in zip(spec.window, start[4]))
              for neg in (False, True)}

    def digit(st: tuple, d: str, frac: bool) -> tuple | None:
        phase, neg, zero, (j, sig, tz), comps, res = st
        if spec.integer and frac:
            j = min(j + 1, cap)
            if d != "0":
                sig, tz = j, 0
        elif spec.integer and not spec.dependent:
            tz = min(tz + 1, cap) if d == "0" else 0
        key = (comps, d, frac)
        if key not in comp_steps:  # comparators only see the digits: share across counters
            comp_steps[key] = tuple(
                (None if ls is None else (lo.frac_digit if frac else lo.int_digit)(ls, d),
                 None if hs is None else (hi.frac_digit if frac else hi.int_digit)(hs, d))
                for (_, lo, hi), (ls, hs) in zip(spec.window, comps))
        comps = comp_steps[key]
        zero = zero and d == "0"
        if frac:
            if mod:
                res = mod.frac_digit(res, d)
                if res is None:
                    return None
            if spec.integer and sig >= cap:
                return None  # no exponent in reach makes it an integer
            if spec.dependent and not zero and not may_pass(
                    neg, sig if spec.integer else -EXP_WINDOW, comps):
                return None  # prune early: the final check fails for every exponent
        else:
            res = mod and mod.int_digit(res, d)
        return (phase, neg, zero, (j, sig, tz), comps, res)

    pass_memo: dict[tuple, bool] = {}

    def may_pass(neg: bool, sig: int, comps: tuple) -> bool:
        """Whether some exponent in the window (>= sig) may still meet both bounds (memoized:
        comparator tuples recur under many counters)."""
        key = (neg, sig, comps)
        out = pass_memo.get(key)
        if out is None:
            out = pass_memo[key] = any(
                e >= sig and _may_pass(spec, neg, lo, ls, hi, hs)
                for (e, lo, hi), (ls, hs) in zip(spec.window, comps))
        return out

    def point(st: tuple) -> tuple:
        _, neg, zero, info, comps, res = st
        comps = tuple((None if ls is None else lo.point(ls), None if hs is None else hi.point(hs))
                      for (_, lo, hi), (ls, hs) in zip(spec.window, comps))
        return ("P", neg, zero, info, comps, res)

    allowed_memo: dict[tuple, tuple | None] = {}

    def allowed(st: tuple) -> tuple | None:
        """Which exponents the mantissa in `st` may take, canonically (so that mantissas with
        the same future share exponent states): ('any',) every exponent; ('min', t) exponents
        >= t; ('set', S) exponents in S (window); None none. Memoized: asked for 'e', 'E' and
        acceptance of every mantissa state."""
        key = st[1:]
        if key not in allowed_memo:
            allowed_memo[key] = _allowed(st)
        return allowed_memo[key]

    def _allowed(st: tuple) -> tuple | None:
        _, neg, zero, (_, sig, tz), comps, res = st
        if zero:
            return ("any",) if spec.bounds_ok(neg, True, _EQ, _EQ) else None
        threshold = None
        if spec.integer:
            if sig >= cap:
                return None
            threshold = sig if sig else -tz
        if not spec.dependent:
            if not spec.bounds_ok(neg, False, _EQ, _EQ):
                return None
            return ("any",) if threshold is None else ("min", threshold)
        if mod and not mod.ok(res):
            return None
        ok = frozenset(
            e for (e, lo, hi), (ls, hs) in zip(spec.window, comps)
            if (threshold is None or e >= threshold)
            and spec.bounds_ok(neg, False, _EQ if ls is None else lo.result(ls),
                               _EQ if hs is None else hi.result(hs))
        )
        return ("set", ok) if ok else None

    def exp_ok(kind: tuple, e: int) -> bool:
        return kind[0] in ("any", "end") or (kind[0] == "min" and e >= kind[1]) or (
            kind[0] == "set" and e in kind[1])

    def exp_step(st: tuple, ch: str) -> tuple | None:
        _, kind, sign, val, seen = st
        if kind[0] == "end":
            return None
        if ch in "+-":
            if sign is not None:
                return None
            if kind[0] == "set":  # only the exponents of this sign are left
                kind = ("set", frozenset(e for e in kind[1] if (e <= 0 if ch == "-" else e >= 0)))
                if not kind[1]:
                    return None
            return ("X", kind, ch, 0, False)
        val = val * 10 + int(ch)
        sign = sign or "+"
        if kind[0] == "min":
            if sign == "+" and val >= kind[1]:
                return ("X", ("any",), "+", 0, True)  # growing further keeps e >= t
            if sign == "-" and -val < kind[1]:
                return None  # growing further only lowers e
        elif kind[0] == "set":
            if val > EXP_WINDOW:
                return None
            if 10 * val > EXP_WINDOW:
                # no further digit stays in the window: the exponent is this one or none.
                # One accepting end state for all such (a state per set, sign and value
                # left ~500 raw states per table to the minimisation)
                return _EXPONENT_READ if (-val if sign == "-" else val) in kind[1] else None
        elif kind[0] == "any":
            val = 0
        return ("X", kind, sign, val, True)

    def step(st: tuple, ch: str) -> tuple | None:
        phase = st[0]
        if phase == "X":
            return exp_step(st, ch) if ch in "+-0123456789" else None
        if ch == "-" and phase == "S":
            return ("M", True, st[2], st[3], signed[True], st[5])
        if ch.isdigit():
            if phase in ("S", "M"):
                comps = signed[False] if phase == "S" else st[4]
                return digit(("Z" if ch == "0" else "I", st[1], st[2], st[3], comps, st[5]), ch,
                             False)
            if phase == "I":
                return digit(st, ch, False)
            if phase in ("P", "F"):
                return digit(("F",) + st[1:], ch, True)
            return None
        if ch == "." and phase in ("Z", "I"):
            return point(st)
        if ch in "eE" and phase in ("Z", "I", "F") and spec.exponents:
            kind = allowed(st)
            return None if kind is None else ("X", kind, None, 0, False)
        return None

    def accepting(st: tuple) -> bool:
        if st[0] == "X":
            _, kind, sign, val, seen = st
            return seen and exp_ok(kind, -val if sign == "-" else val)
        if st[0] not in ("Z", "I", "F"):
            return False
        kind = allowed(st)
        return kind is not None and exp_ok(kind, 0)

    alphabet = "-+.0123456789eE"
    index = {start: 0}
    order = [start]
    rows: list[list[int]] = []
    k = 0
    while k < len(order):
        st = order[k]
        row = [DEAD] * 256
        for ch in alphabet:
            nxt = step(st, ch)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = len(order)
                    order.append(nxt)
                row[ord(ch)] = index[nxt]
        rows.append(row)
        k += 1
    accepting_arr = np.array([accepting(st) for st in order], dtype=bool)
    # minimised: the per-exponent comparators and residues distinguish far more states than
    # the language does (17,027 -> 1,067 for a multipleOf 4004 with a bound), and every state
    # left costs the products below and the grammar's per-state mask work
    return minimize(np.array(rows, dtype=np.int32), accepting_arr, 0)


def _bound(inclusive: object, exclusive: object, keyword: str, tighter: int
           ) -> tuple[Decimal, bool] | None:
    """The tighter of an inclusive and an exclusive bound as (value, exclusive)."""
    a = None if inclusive is None else _decimal(inclusive, keyword)
    b = None if exclusive is None else _decimal(exclusive, "exclusive" + keyword.capitalize())
    if a is None:
        return None if b is None else (b, True)
    if b is None:
        return (a, False)
    return (b, True) if (b - a) * tighter >= 0 else (a, False)


# The canonical spelling of a number: plain decimal, no exponent, no leading zeros, no trailing
# fraction zeros, no "-0" — one spelling per value (every finite decimal value has one).
_CANONICAL_NUMBER = r"0|-?(?:0\.[0-9]*[1-9]|[1-9][0-9]*(?:\.[0-9]*[1-9])?)"


def json_number_dfa(*, integer: bool, minimum: object = None, maximum: object = None,
                    exclusive_minimum: object = None, exclusive_maximum: object = None,
                    multiple_of: object = None, canonical: bool = False) -> ByteDFA:
    """The bytes of one JSON number (RFC 8259) whose value satisfies the bounds, compared exactly
    (Decimal from the schema value's JSON text); `integer=True` is JSON Schema's "integer": any
    number with a zero fractional part (1.0 and 1e2 are integers). Valid spellings with large
    exponents may be rejected, as listed above; no invalid value is ever accepted. Returns an
    empty DFA when no number qualifies. Raises UnsupportedSchemaError("multipleOf") when the
    multipleOf automaton would be too large (or the value is not a positive number).
    `canonical` keeps one spelling per value (`_CANONICAL_NUMBER`: what generation wants —
    no `1.0e0`, no runaway exponents); the values are the same.
    """
    lo = _bound(minimum, exclusive_minimum, "minimum", 1)
    hi = _bound(maximum, exclusive_maximum, "maximum", -1)
    modulus = None
    if multiple_of is not None:
        d = _decimal(multiple_of, "multipleOf")
        if d <= 0:
            raise UnsupportedSchemaError("multipleOf", f"{multiple_of!r} is not positive")
        modulus = Fraction(d)
        if integer:
            modulus = Fraction(modulus.numerator)  # integer multiples of a/b: multiples of a
        if _Modulus(modulus).p > MAX_MODULUS:
            raise UnsupportedSchemaError(
                "multipleOf", f"{multiple_of!r} needs more than {MAX_MODULUS} residues to check "
                "exactly")
    # (canonical spellings have no exponent: their DFA is built without, a window of one)
    dfa = _json_number_dfa(bool(integer), lo, hi, modulus, not canonical)
    return _canonical_number(dfa) if canonical else dfa


@lru_cache(maxsize=512)
def _canonical_number(dfa: ByteDFA) -> ByteDFA:
    return dfa_product(dfa, regex_to_dfa(_CANONICAL_NUMBER), "and")


@lru_cache(maxsize=512)
def _json_number_dfa(integer: bool, lo: tuple[Decimal, bool] | None,
                     hi: tuple[Decimal, bool] | None, modulus: Fraction | None,
                     exponents: bool = True) -> ByteDFA:
    if lo is not None and hi is not None and (lo[0] > hi[0] or (lo[0] == hi[0] and (lo[1] or hi[1]))):
        return _EMPTY
    if lo is not None and hi is not None and lo[0] == hi[0] != 0 and modulus is None:
        return _equal_number_dfa(lo[0], integer, exponents)
    if modulus is not None and (lo is not None or hi is not None):
        # bounds and residues apart, then their (minimised) product: one table for both
        # multiplies the comparator states by the residues (multipleOf 4004 with a maximum:
        # 54,000 states explored, 2 s), and the bound's table is shared by every modulus
        return dfa_product(_json_number_dfa(False, lo, hi, None, exponents),
                           _json_number_dfa(False, None, None, modulus, exponents), "and")
    return _number_table(_NumberSpec(integer, lo, hi, modulus, exponents))


def _equal_number_dfa(v: Decimal, integer: bool, exponents: bool) -> ByteDFA:
    """The spellings of one nonzero value (an enum or const number, or equal bounds): the
    language `_number_table` builds for the bound pair v..v, written as a regex. Each exponent
    e of the window scales one mantissa, v / 10^e, spelled with any trailing fraction zeros
    (and an "integer" takes no exponent below 0, as the table's threshold rules). The table
    steps a pair of comparators per exponent through every digit state: ~60 ms a value, 2.8 s
    for a schema's enum of 47 memory sizes (JSON Schema Store's `up`), against 3-5 ms here.
    `test_equal_numbers_match_the_comparator_table` checks the two agree."""
    if integer and v != v.to_integral_value():
        return _EMPTY
    sign, digits, exponent = v.as_tuple()
    assert isinstance(exponent, int)
    alternatives = []
    for e in _exponent_window(integer, exponents):
        whole, frac = _digits(Decimal((0, digits, exponent - e)))  # (exact: no rounding)
        mantissa = whole + (r"\." + frac + "0*" if frac else r"(\.0+)?")
        if not exponents:
            alternatives.append(mantissa)
        elif e == 0:
            alternatives.append(mantissa + "([eE][+-]?0+)?")
        else:
            alternatives.append(mantissa + (r"[eE]\+?0*" if e > 0 else "[eE]-0*") + str(abs(e)))
    dfa = regex_to_dfa(("-" if sign else "") + "(" + "|".join(alternatives) + ")")
    return minimize(dfa.transitions, dfa.accepting, dfa.initial)


def json_literal_dfa(value: object, canonical: bool = False) -> ByteDFA:
    """One scalar literal: a string (every spelling, or the canonical one), a number (every
    spelling of an equal value, like jsonschema: 1 == 1.0 == 1e0), true, false or null."""
    if value is None or isinstance(value, bool):
        return regex_to_dfa(re.escape(json.dumps(value)))
    if isinstance(value, str):
        return json_string_dfa(literals=[value], canonical=canonical)
    if isinstance(value, (int, float, Decimal)):
        return json_number_dfa(integer=False, minimum=value, maximum=value, canonical=canonical)
    raise TypeError(f"not a JSON scalar: {value!r}")
