"""Regex → byte DFA: soundness and completeness against Python's `re`, refusals, UTF-8 lifting.

The contract checked here (see structgen/automata/regex_syntax.py):

* soundness — every string the DFA accepts is valid UTF-8 and `re.fullmatch(pattern, s)`;
* completeness up to the documented narrowing — `\\d \\w \\s` match what they match under
  `re.ASCII`, `\\W` (and a negated class containing `\\w`) only ASCII characters; `\\D \\S` are
  exact. So a string `re.fullmatch` accepts is guaranteed to be accepted by the DFA exactly when
  none of its characters is one the narrowing removed from a shorthand the pattern uses.
"""
from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from itertools import product

import numpy as np

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from structgen.automata.bytedfa import DEAD, ByteDFA, utf8_sequences
from structgen.automata.regex import regex_to_dfa
from structgen.errors import RegexError, RegexSyntaxError, UnsupportedRegexError

# --------------------------------------------------------------------------------------------
# A small recursive regex generator. Each node is (pattern text, set of narrowing buckets used).
# Buckets: "d", "w", "s" — Unicode members outside the re.ASCII class are dropped;
#          "W" — non-ASCII non-word characters are dropped (\W, [^\w...]).
# --------------------------------------------------------------------------------------------

LITERALS = list("abcxyzABZ019_-. \n\t*+?()[]{}|^$\\/\"'") + [
    "é", "ß", "ı", "Σ", "ς", "k", "K", "日", "本", "😀", "🎉", "\u00a0", "\u0660", "\x7f", "\x80",
    "\u07ff", "\u0800", "\uffff", "\U00010000", "\U0010ffff",
]
CLASS_CHARS = list("abcz09_-^]\\ .") + ["é", "ß", "日", "😀", "\u0660", "\u00a0", "\u2028"]

RANGE_ENDS = [c for c in LITERALS + CLASS_CHARS if ord(c) < 0x4000]


def _class_char(c: str) -> str:
    return "\\" + c if c in "\\]^-[" else c


@st.composite
def char_classes(draw):
    negated = draw(st.booleans())
    items: list[str] = []
    buckets: set[str] = set()
    shorthand = draw(st.sampled_from([None, None, "d", "w", "s", "D", "S", "W"]))
    for _ in range(draw(st.integers(0 if shorthand else 1, 3))):
        if draw(st.booleans()):
            items.append(_class_char(draw(st.sampled_from(CLASS_CHARS))))
        else:
            # range ends stay below U+4000: interegular enumerates every member of a range, so a
            # range over the astral planes costs ~10 s to compile (a known performance limit)
            a, b = sorted(draw(st.sampled_from(RANGE_ENDS)) for _ in range(2))
            items.append(_class_char(a) + "-" + _class_char(b))
    if shorthand:
        items.insert(draw(st.integers(0, len(items))), "\\" + shorthand)
        if shorthand in "dws" and not (negated and shorthand != "w"):
            buckets.add("W" if negated else shorthand)  # [^\w..]: narrowed to ASCII
        elif shorthand == "W":
            buckets.add("w" if negated else "W")  # [^\W..]: word chars, narrowed to ASCII
    return "[" + ("^" if negated else "") + "".join(items) + "]", buckets


def _atoms():
    literal = st.sampled_from(LITERALS).map(lambda c: (re.escape(c) if c != " " else " ", set()))
    escaped = st.sampled_from(["\\x41", "\\u00e9", "\\U0001F600", "\\N{BULLET}", "\\0", "\\t"]).map(
        lambda e: (e, set()))
    shorthand = st.sampled_from("dwsDSW").map(
        lambda s: ("\\" + s, {s} if s in "dwsW" else set()))
    dot = st.just((".", set()))
    return st.one_of(literal, literal, escaped, shorthand, dot, char_classes())


def _combine(children):
    def quantified(node):
        return st.tuples(
            st.just(node),
            st.sampled_from(["*", "+", "?", "{2}", "{0,2}", "{1,}", "{,2}", "{1,3}"]),
            st.booleans(),
        ).map(lambda t: ("(?:" + t[0][0] + ")" + t[1] + ("?" if t[2] else ""), t[0][1]))

    def join(nodes, sep):
        return sep.join(n[0] for n in nodes), set().union(*(n[1] for n in nodes))

    return st.one_of(
        children.flatmap(quantified),
        st.lists(children, min_size=2, max_size=3).map(lambda ns: join(ns, "")),
        st.lists(children, min_size=2, max_size=3).map(lambda ns: join(ns, "|")),
        children.map(lambda n: ("(" + n[0] + ")", n[1])),
        children.map(lambda n: ("(?i:" + n[0] + ")", n[1])),  # case-insensitive, Python's rules
    )


@st.composite
def regexes(draw):
    """(pattern, narrowing buckets used)."""
    body, buckets = draw(st.recursive(_atoms(), _combine, max_leaves=8))
    if draw(st.integers(0, 4)) == 0:
        body = "(?:" + body + ")$"
    if draw(st.integers(0, 4)) == 0:
        body = "^" + body
    if draw(st.integers(0, 6)) == 0:
        body = "(?i)" + body
    return body, frozenset(buckets)


def compile_or_skip(pattern: str) -> ByteDFA:
    re.compile(pattern)  # the generator only makes valid Python regexes
    try:
        return regex_to_dfa(pattern)
    except RegexError as e:
        # the only acceptable failure: a language with no string at all
        assert not isinstance(e, (RegexSyntaxError, UnsupportedRegexError)), e
        assume(False)
        raise


def random_walk(dfa: ByteDFA, rng: random.Random, max_len: int = 40) -> bytes | None:
    """Bytes of a random walk from the initial state that ends accepting (None if it ran long)."""
    state, out = dfa.initial, bytearray()
    for _ in range(max_len):
        if dfa.accepting[state] and rng.random() < 0.3:
            return bytes(out)
        live = [b for b in range(256) if dfa.rows[state][b] != DEAD]
        if not live:
            assert dfa.accepting[state], "trimmed DFA has a non-accepting dead end"
            return bytes(out)
        b = rng.choice(live)
        out.append(b)
        state = dfa.rows[state][b]
    return bytes(out) if dfa.accepting[state] else None


def _dropped(c: str, bucket: str) -> bool:
    """Whether the narrowing removed `c` from the shorthand family `bucket`."""
    if bucket == "W":
        return not c.isascii() and re.fullmatch(r"\W", c) is not None
    sh = "\\" + bucket
    return re.fullmatch(sh, c) is not None and re.fullmatch(sh, c, re.ASCII) is None


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@SETTINGS
@given(regexes(), st.integers(0, 2**32 - 1))
def test_dfa_walks_are_python_matches(rx, seed):
    pattern, _ = rx
    dfa = compile_or_skip(pattern)
    rng = random.Random(seed)
    for _ in range(8):
        data = random_walk(dfa, rng)
        if data is None:
            continue
        text = data.decode("utf-8")  # strict: accepting walks are whole characters
        assert re.fullmatch(pattern, text), (pattern, text)


@SETTINGS
@given(st.data(), regexes())
def test_python_matches_are_accepted_unless_narrowed(data, rx):
    pattern, buckets = rx
    dfa = compile_or_skip(pattern)
    for _ in range(3):
        s = data.draw(st.from_regex(pattern, fullmatch=True), label="string")
        assert re.fullmatch(pattern, s)
        try:
            encoded = s.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate is not text: no byte DFA can accept it
            continue
        narrowed = any(_dropped(c, b) for c in set(s) for b in buckets)
        if not narrowed:
            assert dfa.accepts(encoded), (pattern, s)


ALL_CODE_POINTS = np.array([c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF])


def _encoded_matrix() -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 of every code point as a (n, 4) byte matrix and the lengths."""
    data = "".join(map(chr, ALL_CODE_POINTS)).encode("utf-32-le")
    cps = np.frombuffer(data, np.uint32).astype(np.int64)
    lengths = 1 + (cps >= 0x80) + (cps >= 0x800) + (cps >= 0x10000)
    mat = np.zeros((len(cps), 4), np.int64)
    for n in range(1, 5):
        sel = lengths == n
        enc = np.frombuffer("".join(map(chr, cps[sel])).encode(), np.uint8).reshape(-1, n)
        mat[sel, :n] = enc
    return mat, lengths


ENCODED, LENGTHS = _encoded_matrix()


def accepted_code_points(dfa: ByteDFA) -> set[int]:
    """All single characters the DFA accepts (vectorised walk over every code point)."""
    state = np.full(len(ENCODED), dfa.initial, np.int64)
    for k in range(4):
        active = (LENGTHS > k) & (state >= 0)
        state[active] = dfa.transitions[state[active], ENCODED[active, k]]
    ok = (state >= 0)
    ok[ok] = dfa.accepting[state[ok]]
    return set(ALL_CODE_POINTS[ok].tolist())


@pytest.mark.parametrize("pattern", [r"\d", r"\w", r"\s", r"\W", r"\D", r"\S", ".", "(?s).",
                                     r"[^\w]", r"[^\d]", r"[^\s]", r"[\S]", r"[\D]", r"[^\Wa]",
                                     r"[\s\S]", r"[\w\W]", r"[^\Sa ]", r"[^\Dx5]", r"[\Sé]", r"[^\d\s]",
                                     r"[x\d-]", r"[a\w-]", r"[^x\d-]", r"[-\d]"])
def test_shorthands_exact_up_to_narrowing(pattern):
    """Single-character classes over every code point: \\D \\S . exact, the rest ASCII-narrowed."""
    ours = accepted_code_points(regex_to_dfa(pattern))
    rx = re.compile(pattern)
    python = {c for c in ALL_CODE_POINTS.tolist() if rx.fullmatch(chr(c))}
    assert not ours - python, [hex(c) for c in sorted(ours - python)[:10]]
    narrowed = {r"\d": "d", r"\w": "w", r"\s": "s", r"\W": "W", r"[^\w]": "W", r"[^\Wa]": "w",
                r"[x\d-]": "d", r"[a\w-]": "w", r"[-\d]": "d"}
    bucket = narrowed.get(pattern)
    missing = python - ours
    if bucket is None:
        assert not missing, [hex(c) for c in sorted(missing)[:10]]
    else:
        assert all(_dropped(chr(c), bucket) for c in missing)
        assert ours == {c for c in python if not _dropped(chr(c), bucket)}


# ------------------------------------------------------------------ case-insensitive matching

def _case_candidates() -> list[str]:
    """Every code point with any case mapping, and everything such mappings reach."""
    out = set()
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        for m in (ch.lower(), ch.upper(), ch.casefold(), ch.title()):
            if m != ch:
                out.add(ch)
                out.update(x for x in m)
    return sorted(out)


CASED = _case_candidates()


@pytest.mark.parametrize("pattern", ["(?i)k", "(?i)s", "(?i)ß", "(?i)σ", "(?i)ı", "(?i)İ", "(?i)µ",
                                     "(?i)[a-z]", "(?i)[^a-z]", "(?i)[^k]", "(?i)[^σ]", "(?i)[ǅ]",
                                     "(?i:[^s])x", "(?i)[^\\w]", "(?i)\\W", "(?i)[^ß]+"])
def test_case_insensitive_is_sound(pattern):
    """(?i) follows Python's Unicode case rules, never interegular's str.lower/str.upper."""
    dfa = regex_to_dfa(pattern)
    suffix = "x" if pattern.endswith("x") else ""
    probe = CASED + [chr(c) for c in range(0x80)] + ["日", "😀", "\u0660"]
    for ch in probe:
        s = ch + suffix
        if dfa.accepts(s.encode()):
            assert re.fullmatch(pattern, s), (pattern, hex(ord(ch)))
    # ASCII letters, at least, are case-folded
    if pattern == "(?i)[a-z]":
        assert dfa.accepts(b"Q") and dfa.accepts(b"q")


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("pattern, position, construct", [
    (r"(a)\1", 3, "backreference"),
    (r"(?P<x>a)(?P=x)", 8, "named backreference"),
    (r"a(?=b)", 1, "lookaround"),
    (r"a(?!b)", 1, "lookaround"),
    (r"(?<=a)b", 0, "lookaround"),
    (r"x(?<!a)b", 1, "lookaround"),
    (r"\bfoo", 0, r"\b"),
    (r"foo\B", 3, r"\B"),
    (r"\Afoo", 0, r"\A"),
    (r"foo\Z", 3, r"\Z"),
    (r"a^b", 1, "'^'"),
    (r"a$b", 1, "'$'"),
    (r"(^a)", 1, "'^'"),
    (r"(a$)", 2, "'$'"),
    (r"a*+", 2, "possessive"),
    (r"xa++", 3, "possessive"),
    (r"a?+", 2, "possessive"),
    (r"a{2,3}+", 6, "possessive"),
    (r"a{,}+", 4, "possessive"),
    (r"a{2}+", 4, "possessive"),
    (r"(?>ab)c", 0, "atomic group"),
    (r"x(?>ab)", 1, "atomic group"),
    (r"(?x)a b", 0, "verbose"),
    (r"(a)?(?(1)b|c)", 4, "conditional"),
])
def test_unsupported_constructs(pattern, position, construct):
    re.compile(pattern)  # valid Python
    with pytest.raises(UnsupportedRegexError) as info:
        regex_to_dfa(pattern)
    assert info.value.position == position
    assert construct in info.value.construct
    assert info.value.pattern == pattern


@pytest.mark.parametrize("pattern", [r"a}+", r"a{b}+", r"a{}+", r"\{2}+", r"x{1,2,3}+", r"(?i)a{b}+"])
def test_literal_brace_is_not_a_possessive_quantifier(pattern):
    re.compile(pattern)
    dfa = regex_to_dfa(pattern)
    for s in ["a}", "a}}}", "a{b}", "a{b}}", "A{B}}", "a{}}", "{2}}", "x{1,2,3}", "x{1,2,3}}"]:
        assert dfa.accepts(s.encode()) == bool(re.fullmatch(pattern, s)), (pattern, s)


@pytest.mark.parametrize("pattern", ["a(", "[a", "a{2,1}", "*a", "a)", "a**", "(?P<1>a)", "\\"])
def test_syntax_errors_carry_re_position(pattern):
    with pytest.raises(re.error) as expected:
        re.compile(pattern)
    with pytest.raises(RegexSyntaxError) as info:
        regex_to_dfa(pattern)
    assert info.value.position == expected.value.pos
    assert info.value.pattern == pattern


@pytest.mark.parametrize("pattern", [r"[^\w\x00-\x7f]", r"ab[^\w\x00-\x7f]*c[^\w\x00-\x7f]",
                                     r"(?:[^\W\x00-\x7f])+", "\ud800", "a[\ud800-\udfff]b"])
def test_empty_language_is_an_error(pattern):
    with pytest.raises(RegexError) as info:
        regex_to_dfa(pattern)
    assert type(info.value) is RegexError


def test_anchors_at_the_ends_are_allowed():
    for p in ["^abc$", "^abc", "abc$", r"abc\$", "^a|b$", "(?i)^abc", "(?#c)^abc$"]:
        dfa = regex_to_dfa(p)
        for s in ["abc", "abc$", "a", "b", "abc\n"]:
            assert dfa.accepts(s.encode()) == bool(re.fullmatch(p, s)), (p, s)


# ----------------------------------------------------------------------------- UTF-8

BOUNDARIES = [0, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFFFF, 0x10000,
              0x3FFFF, 0x40000, 0x10FFFF]


def _check_cover(lo: int, hi: int) -> None:
    seqs = utf8_sequences(lo, hi)
    expected_count = sum(1 for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF) if hi - lo < 200_000 \
        else (hi - lo + 1) - max(0, min(hi, 0xDFFF) - max(lo, 0xD800) + 1)
    sizes = 0
    for seq in seqs:
        assert all(0 <= a <= b <= 255 for a, b in seq)
        n = 1
        for a, b in seq:
            n *= b - a + 1
        sizes += n
        # every corner of the box is a valid encoding of a code point in range
        for corner in product(*seq):
            cp = ord(bytes(corner).decode("utf-8"))
            assert lo <= cp <= hi and not 0xD800 <= cp <= 0xDFFF
    assert sizes == expected_count, (hex(lo), hex(hi))
    if hi - lo <= 5000:
        produced = [bytes(t) for seq in seqs for t in product(*(range(a, b + 1) for a, b in seq))]
        expected = {chr(c).encode() for c in range(lo, hi + 1) if not 0xD800 <= c <= 0xDFFF}
        assert len(produced) == len(set(produced))
        assert set(produced) == expected
    else:  # sample code points: each encoding is covered by exactly one box
        rng = random.Random(lo * 31 + hi)
        for c in [lo, hi] + [rng.randint(lo, hi) for _ in range(300)]:
            if 0xD800 <= c <= 0xDFFF:
                continue
            enc = chr(c).encode()
            hits = sum(1 for seq in seqs
                       if len(seq) == len(enc) and all(a <= x <= b for x, (a, b) in zip(enc, seq)))
            assert hits == 1, hex(c)


@pytest.mark.parametrize("lo, hi", [(b - d, b + e) for b in BOUNDARIES for d in (0, 1, 70) for e in (0, 1, 70)
                                    if 0 <= b - d <= b + e <= 0x10FFFF] + [(0, 0x10FFFF), (0xD800, 0xDFFF),
                                                                            (0x80, 0x10FFFF), (0x7FF, 0x10000)])
def test_utf8_sequences_boundaries(lo, hi):
    _check_cover(lo, hi)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0x10FFFF), st.integers(0, 0x10FFFF), st.integers(0, 3000))
def test_utf8_sequences_random(a, b, width):
    if width:
        lo = min(a, 0x10FFFF - width)
        _check_cover(lo, lo + width)
    else:
        _check_cover(min(a, b), max(a, b))


def test_dfa_accepts_only_valid_utf8():
    """`.` accepts exactly the well-formed encodings of one character: no overlongs, surrogates."""
    dfa = regex_to_dfa("(?s).")
    for data in [b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf0\x80\x80\x80",
                 b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\x80", b"\xff"]:
        assert not dfa.accepts(data), data
    for ch in ["\x00", "\x7f", "\x80", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\U00010000",
               "\U0010ffff"]:
        assert dfa.accepts(ch.encode()), hex(ord(ch))


def test_unicode_literals_and_partial_characters():
    dfa = regex_to_dfa("(café|naïve|日本語) [αβγ]{2}")
    for s in ["café αβ", "naïve γγ", "日本語 αα"]:
        assert dfa.accepts(s.encode())
    assert not dfa.accepts("cafe αβ".encode())
    # a character split across two chunks is just an intermediate state
    data = "日本語 αβ".encode()
    state = dfa.walk(dfa.initial, data[:1])
    assert state != DEAD and not dfa.accepting[state]
    assert dfa.walk(state, data[1:]) != DEAD and dfa.accepting[dfa.walk(state, data[1:])]
