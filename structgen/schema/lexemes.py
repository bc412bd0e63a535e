"""Exact byte DFAs for JSON lexemes: one string or number value of a JSON Schema instance.

A string terminal's language is every JSON spelling of every allowed *decoded* value: the
constraints (pattern, length, format, literals, excluded keys) are intersected over characters,
then each character edge is lifted to all its spellings (raw UTF-8, short escapes, `\\uXXXX` in
either hex case, surrogate pairs), so a model may escape however it likes and still be checked
exactly.

Lone surrogates: Python's `json.loads` accepts `"\\ud800"` (one code point), but such a string
has no UTF-8 encoding and ECMA-262/most consumers treat it as malformed, so no lone surrogate
spelling is ever accepted (a high surrogate escape must be followed by a low one). This narrows
the language by design; it never widens it.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

import interegular
import numpy as np
from interegular.fsm import FSM, Alphabet, anything_else

from ..automata.bytedfa import (
    DEAD,
    ByteDFA,
    ByteSetSequence,
    complement_ranges,
    ranges_of,
    spelled_tables,
    utf8_byte_sets,
)
from ..automata.regex_syntax import to_interegular
from ..errors import RegexError, UnsupportedSchemaError

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


# --- character DFAs ---------------------------------------------------------------------------

CharDFA = tuple[int, int, frozenset, dict]  # (n_states, initial, finals, {state: [(ranges, t)]})


def _char_dfa(fsm: FSM) -> CharDFA:
    """An interegular FSM as a DFA over code point ranges (multi-character symbols never match)."""
    by_symbol: dict[int, list[int]] = {}
    explicit: list[int] = []
    other = None
    for char, symbol in fsm.alphabet._symbol_mapping.items():
        if char is anything_else:
            other = symbol
        elif len(char) == 1:
            by_symbol.setdefault(symbol, []).append(ord(char))
            explicit.append(ord(char))
    symbol_ranges = {sym: tuple(ranges_of(cps)) for sym, cps in by_symbol.items()}
    if other is not None:
        symbol_ranges[other] = tuple(complement_ranges(ranges_of(explicit)))
    index = {s: i for i, s in enumerate(sorted(fsm.states))}
    edges: dict[int, list] = {}
    for s in fsm.states:
        merged: dict[int, list] = {}
        for sym, t in fsm.map.get(s, {}).items():
            merged.setdefault(index[t], []).extend(symbol_ranges.get(sym, ()))
        edges[index[s]] = [(tuple(ranges_of_pairs(r)), t) for t, r in merged.items() if r]
    return len(index), index[fsm.initial], frozenset(index[s] for s in fsm.finals), edges


def ranges_of_pairs(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged union of inclusive ranges."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _with_length(dfa: CharDFA, min_length: int, max_length: int | None) -> CharDFA:
    """Product with a code point counter: 0..max_length, or saturating at min_length."""
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
                    index[key] = len(order)
                    order.append(key)
                out[k].append((ranges, index[key]))
        k += 1
    finals_out = frozenset(i for i, (q, c) in enumerate(order) if q in finals and c >= min_length)
    return len(order), 0, finals_out, out


# --- patterns (ECMA-262 search semantics) ------------------------------------------------------

_ECMA_DOT = "[^\\n\\r\\u2028\\u2029]"  # ECMA '.' excludes all four line terminators
_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


def _ecma_alternatives(pattern: str) -> tuple[str, list[tuple[str, bool, bool]]]:
    """Split a pattern into top-level alternatives (leading_flags, [(body, ^, $)]).

    Rewrites on the way what Python reads wider than ECMA-262, so the result is within both
    (jsonschema checks with Python `re`): '.' also excludes '\\r', U+2028, U+2029; '\\S' and
    '[^\\s...]' also exclude U+FEFF (an ECMA space, not a Python one). A '\\S' mixed into a
    positive class cannot be narrowed that way and is refused, and so is `{,n}` (a literal in
    ECMA-262, a repeat in Python). ECMA named groups `(?<name>...)` get Python's spelling.
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
        if c == "\\" and i + 1 < n:
            cur.append("[^\\s\\ufeff]" if pattern[i + 1] == "S" else pattern[i : i + 2])
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
            if "S" in escapes and not negated and body not in ("\\s\\S", "\\S\\s"):
                raise UnsupportedSchemaError(
                    "pattern", f"'\\S' inside a character class in {pattern!r}: ECMA-262 and "
                    "Python disagree on its members and it cannot be narrowed exactly")
            if negated and "s" in escapes:
                body += "\\ufeff"
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
def pattern_fsm(pattern: str) -> FSM:
    """Character FSM of the strings in which `pattern` finds a match (JSON Schema semantics)."""
    flags, alts = _ecma_alternatives(pattern)
    parts = []
    try:
        for body, start, end in alts:
            core = to_interegular(flags + body)
            parts.append(("" if start else "(?s:.)*") + f"(?:{core})" + ("" if end else "(?s:.)*"))
        return interegular.parse_pattern("|".join(f"(?:{p})" for p in parts)).to_fsm()
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


def json_string_dfa(*, pattern: str | None = None, min_length: int = 0,
                    max_length: int | None = None, format: str | None = None,
                    literals: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> ByteDFA:
    """The bytes of one complete JSON string (with its quotes) whose decoded value matches
    `pattern` (unanchored ECMA-262 search), has min_length..max_length code points, satisfies
    `format`, is one of `literals` when given and none of `exclude`.

    Every JSON spelling of such a value is accepted (see the module doc; lone surrogates never).
    Returns an empty DFA (`is_empty()`) when no string qualifies. Raises UnsupportedSchemaError
    naming "pattern", "format", "maxLength" or "minLength" when it cannot be exact.
    """
    return _json_string_dfa(
        pattern, int(min_length), None if max_length is None else int(max_length), format,
        None if literals is None else tuple(sorted(set(literals))), tuple(sorted(set(exclude))))


@lru_cache(maxsize=512)
def _json_string_dfa(pattern: str | None, min_length: int, max_length: int | None,
                     format: str | None, literals: tuple[str, ...] | None,
                     exclude: tuple[str, ...]) -> ByteDFA:
    fsms: list[FSM] = []
    if pattern is not None:
        fsms.append(pattern_fsm(pattern))
    if format is not None:
        from .formats import format_fsm

        fsms.append(format_fsm(format))
    if literals is not None:
        fsms.append(_literals_fsm(literals))
    if fsms:
        core = fsms[0] if len(fsms) == 1 else FSM.intersection(*fsms)
        if exclude:
            core = FSM.difference(core, _literals_fsm(exclude))
        char_dfa = _char_dfa(core)
    elif exclude:
        char_dfa = _char_dfa(_literals_fsm(exclude).everythingbut())
    else:
        char_dfa = (1, 0, frozenset([0]), {0: [(((0, 0x10FFFF),), 0)]})
    if min_length > 0 or max_length is not None:
        if max_length is not None and max_length < min_length:
            return _EMPTY
        bound = max_length if max_length is not None else min_length
        keyword = "maxLength" if max_length is not None else "minLength"
        if char_dfa[0] * (bound + 1) > MAX_STRING_STATES:
            raise UnsupportedSchemaError(
                keyword, f"a length bound of {bound} code points needs more than "
                f"{MAX_STRING_STATES} automaton states to enforce exactly")
        char_dfa = _with_length(char_dfa, min_length, max_length)
    n, initial, finals, edges = char_dfa
    try:
        return _quoted(spelled_tables(n, initial, finals, edges, json_char_spellings,
                                      max_states=MAX_STRING_STATES))
    except OverflowError as e:
        keyword = ("maxLength" if max_length is not None else "minLength" if min_length else
                   "pattern" if pattern is not None else "format")
        raise UnsupportedSchemaError(keyword, f"too large to enforce exactly: {e}") from None
