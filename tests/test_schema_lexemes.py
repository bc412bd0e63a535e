"""Exact JSON lexeme DFAs, checked against reference oracles (json.loads, re, len, Decimal,
jsonschema's format checker and the official test suite's format cases)."""
from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen.errors import UnsupportedSchemaError
from structgen.schema.lexemes import json_string_dfa

# --- strings: spellings -------------------------------------------------------------------------

_FRAGMENTS = [
    "a", "Z", "0", " ", "/", "é", "€", "😀", "\u2028", "\x7f", "\\\\", "\\\"", "\\/", "\\b", "\\f",
    "\\n", "\\r", "\\t", "\\x", "\\u0041", "\\u00e9", "\\u00E9", "\\uD83D", "\\ude00", "\\uDE00",
    "\\ud800", "\\u12", "\\U0041", "\\", "\"", "\x00", "\x1f", "\t", "\n", "u", "D83D",
]
_BAD_BYTES = [b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xff", b"\xf4\x90\x80\x80", b"\xc0\xaf"]


def _decode(data: bytes) -> str | None:
    """Reference: the decoded value of one JSON string spelled exactly by `data`, else None.

    Lone surrogates are refused by design (see structgen.schema.lexemes)."""
    if not (data.startswith(b'"') and data.endswith(b'"') and len(data) >= 2):
        return None
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(value, str) or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return None
    return value


def _spellings(value: str, rng: random.Random) -> bytes:
    """One random JSON spelling of `value`: raw, short escape, \\u in mixed case, pairs."""
    out = []
    short = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
             "\r": "\\r", "\t": "\\t"}
    for ch in value:
        cp = ord(ch)
        options = []
        if ch not in '"\\' and cp >= 0x20:
            options.append(ch)
        if ch in short:
            options.append(short[ch])
        if cp <= 0xFFFF:
            options.append("\\u" + "".join(rng.choice((c.lower(), c.upper())) for c in f"{cp:04x}"))
        else:
            v = cp - 0x10000
            hi, lo = 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)
            options.append(f"\\u{hi:04x}\\u{lo:04X}")
        out.append(rng.choice(options))
    return ('"' + "".join(out) + '"').encode()


_TEXT = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from("\"\\/\b\f\n\r\t\x00😀é"),
                max_size=12)


@settings(max_examples=150, deadline=None)
@given(_TEXT, st.randoms(use_true_random=False))
def test_string_accepts_every_spelling(value: str, rng: random.Random) -> None:
    dfa = json_string_dfa()
    assert dfa.accepts(json.dumps(value).encode())
    assert dfa.accepts(json.dumps(value, ensure_ascii=False).encode())
    assert dfa.accepts(_spellings(value, rng))


@settings(max_examples=150, deadline=None)
@given(_TEXT, st.randoms(use_true_random=False))
def test_canonical_string_has_one_spelling(value: str, rng: random.Random) -> None:
    """canonical=True: exactly json.dumps(ensure_ascii=False)'s spelling, of the same values."""
    dfa = json_string_dfa(canonical=True)
    canonical = json.dumps(value, ensure_ascii=False).encode()
    assert dfa.accepts(canonical)
    for other in (json.dumps(value).encode(), _spellings(value, rng)):
        assert dfa.accepts(other) == (other == canonical)
    key = json_string_dfa(literals=[value], canonical=True)
    assert key.forced_bytes(key.initial) == canonical  # a key or constant is forced text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=8), st.sampled_from([b""] + _BAD_BYTES),
       st.integers(0, 8))
def test_string_bytes_match_json_loads(parts: list[str], bad: bytes, where: int) -> None:
    body = "".join(parts).encode()
    where = min(where, len(body))
    data = b'"' + body[:where] + bad + body[where:] + b'"'
    dfa = json_string_dfa()
    assert dfa.accepts(data) == (_decode(data) is not None), data


def test_string_manual_spellings() -> None:
    dfa = json_string_dfa(literals=["A/", "😀"])
    for data in [b'"\\u0041\\/"', b'"A/"', b'"\\u0041/"', b'"\\ud83d\\uDE00"', '"😀"'.encode()]:
        assert dfa.accepts(data), data
    for data in [b'"\\u0041\\/', b'"a/"', b'"\\ud83d"', b'"\\ud83d\\u0041"', b'"\\uDE00\\uD83D"',
                 b"'A/'", b'"\\u041/"']:
        assert not dfa.accepts(data), data


# --- strings: pattern, length, literals, exclude -------------------------------------------------

_PATTERNS = [
    "a", "^a", "a$", "^a$", "^ab|cd$", "^(ab|cd)$", "a.c", "[0-9]{2,3}", "^[a-z]+@[a-z]+\\.com$",
    "^\\d+$", "\\w\\s", "^[^a]*$", "(?i)^ab", "^$", "", "x|", "^é+€?$", "^(?:[ab]c)*$", "\\S",
    "^[^\\s]+$", "[\\s\\S]", "😀{2}", "^.{2,4}$", "\\.", "^\\u00e9", "a{2}b?$",
    "^(?<word>[a-c]+)-$", "(^ab|cd$)", "^(a$|b)", "[\\Sa]", "^[\\S]+$", "(^x)|y$", "a|b|c|^d",
    "^[\\w\\s-]+$", "[a\\d-]", "(?:^a)",
]
_PATTERN_TEXT = st.text(alphabet="abcdABCD09 -@.é€😀_\t", max_size=8)


@pytest.mark.parametrize("pattern", _PATTERNS)
@settings(max_examples=60, deadline=None)
@given(value=_PATTERN_TEXT)
def test_pattern_is_search(pattern: str, value: str) -> None:
    dfa = json_string_dfa(pattern=pattern)
    python = pattern.replace("(?<word>", "(?P<word>")
    expected = re.search(python, value, re.ASCII) is not None  # ECMA: \d \w are ASCII
    assert dfa.accepts(json.dumps(value).encode()) == expected, (pattern, value)
    assert dfa.accepts(json.dumps(value, ensure_ascii=False).encode()) == expected


def test_pattern_narrows_to_ecma() -> None:
    """Where ECMA-262 is narrower than Python, ECMA wins (and '$' is the very end)."""
    dot = json_string_dfa(pattern="^a.c$")
    assert dot.accepts(b'"abc"')
    for ch in ["\\n", "\\r", "\\u2028", "\\u2029"]:
        assert not dot.accepts(f'"a{ch}c"'.encode()), ch
    assert not json_string_dfa(pattern="^\\S$").accepts(b'"\\ufeff"')
    assert not json_string_dfa(pattern="^[^\\s]$").accepts(b'"\\ufeff"')
    assert json_string_dfa(pattern="^[^\\s]$").accepts(b'"x"')
    assert not json_string_dfa(pattern="^a$").accepts(b'"a\\n"')
    spaces = json_string_dfa(pattern="^\\s[\\sx]$")
    for ch in ["\\u00a0", "\\u2003", "\\u2029", "\\t", " "]:
        assert spaces.accepts(f'"{ch}{ch}"'.encode()), ch
        assert spaces.accepts(f'"{ch}x"'.encode()), ch
    for ch in ["\\ufeff", "\\u001c", "\\u0085", "y"]:  # not a space in one of ECMA, Python
        assert not spaces.accepts(f'"{ch}{ch}"'.encode()), ch
    control = json_string_dfa(pattern="^\\cC[\\cj]$")
    assert control.accepts(b'"\\u0003\\n"') and not control.accepts(b'"cCj"')


@pytest.mark.parametrize("pattern, construct", [
    ("(?=a)", "lookaround"), ("a\\bc", "anchor"), ("a^b", "anchor"), ("\\p{L}", "bad escape"),
    ("(a)\\1", "backreference"), ("(?:^|x)a", "anchor"), ("a{,3}", "{,n}"), ("[", "unterminated"),
    ("(^a)+", "anchor"),
])
def test_pattern_refused(pattern: str, construct: str) -> None:
    with pytest.raises(UnsupportedSchemaError) as info:
        json_string_dfa(pattern=pattern)
    assert info.value.keyword == "pattern"
    assert construct in str(info.value)


@settings(max_examples=300, deadline=None)
@given(value=st.text(alphabet="ab\n😀é\"", max_size=9), lo=st.integers(0, 6),
       span=st.none() | st.integers(0, 5))
def test_length_counts_code_points(value: str, lo: int, span: int | None) -> None:
    hi = None if span is None else lo + span
    dfa = json_string_dfa(min_length=lo, max_length=hi)
    expected = lo <= len(value) and (hi is None or len(value) <= hi)
    assert dfa.accepts(json.dumps(value).encode()) == expected
    assert dfa.accepts(json.dumps(value, ensure_ascii=False).encode()) == expected


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet="ab1 ", max_size=7), lo=st.integers(0, 4), span=st.integers(0, 3))
def test_pattern_and_length(value: str, lo: int, span: int) -> None:
    dfa = json_string_dfa(pattern="^a|1", min_length=lo, max_length=lo + span)
    expected = re.search("^a|1", value) is not None and lo <= len(value) <= lo + span
    assert dfa.accepts(json.dumps(value).encode()) == expected


def test_literals_and_exclude() -> None:
    names = ["id", "name", "", "é", "😀", "a\"b"]
    only = json_string_dfa(literals=names, exclude=["name"])
    others = json_string_dfa(exclude=names)
    for value in names + ["nam", "names", "ID", "x", "😀😀", "\ud800"]:
        for data in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode(
                "utf-8", "surrogatepass")):
            valid = not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
            assert only.accepts(data) == (valid and value in names and value != "name"), value
            assert others.accepts(data) == (valid and value not in names), value
    assert json_string_dfa(literals=[]).is_empty()
    assert json_string_dfa(literals=["ab"], pattern="c").is_empty()
    assert json_string_dfa(literals=["ab", "abc"], max_length=2).accepts(b'"ab"')
    assert not json_string_dfa(literals=["ab", "abc"], max_length=2).accepts(b'"abc"')
    assert json_string_dfa(min_length=3, max_length=2).is_empty()
    dated = json_string_dfa(format="date", exclude=["2024-01-01"])
    assert dated.accepts(b'"2024-01-02"') and not dated.accepts(b'"2024-01-01"')
    assert not dated.accepts(b'"\\u0032024-01-01"') and not dated.accepts(b'"x"')
    keyed = json_string_dfa(pattern="^a", exclude=["ab", "abc"], max_length=3)
    assert keyed.accepts(b'"a"') and keyed.accepts(b'"abd"') and not keyed.accepts(b'"ab"')
    assert not keyed.accepts(b'"abc"') and not keyed.accepts(b'"abcd"') and not keyed.accepts(b'"b"')


def test_long_lengths_are_fast_or_refused() -> None:
    import time

    start = time.perf_counter()
    dfa = json_string_dfa(max_length=257)
    assert time.perf_counter() - start < 2.0  # ~40 ms on a quiet machine
    assert dfa.accepts(json.dumps("é" * 257).encode())
    assert not dfa.accepts(json.dumps("é" * 258).encode())
    with pytest.raises(UnsupportedSchemaError) as info:
        json_string_dfa(max_length=10_000)
    assert info.value.keyword == "maxLength"
    with pytest.raises(UnsupportedSchemaError) as info:
        json_string_dfa(min_length=10_000)
    assert info.value.keyword == "minLength"


# --- numbers ------------------------------------------------------------------------------------

from decimal import Decimal  # noqa: E402
from fractions import Fraction  # noqa: E402

from structgen.schema.lexemes import (  # noqa: E402
    EXP_WINDOW,
    MAX_FRACTION_DIGITS,
    json_literal_dfa,
    json_number_dfa,
)

_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


@st.composite
def _number_texts(draw: st.DrawFn) -> str:
    """JSON number spellings, mostly valid, with edge shapes (zeros, exponents, leading zeros in
    the exponent), plus some arbitrary strings over the number alphabet."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet="-+.0123456789eE", min_size=1, max_size=8))
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.sampled_from(["0", "1", "2", "5", "9", "10", "15", "100", "250", "999", "1000",
                                  "1001", "123456", "100000000", "7"]) | st.from_regex(
        r"[1-9][0-9]{0,12}", fullmatch=True))
    frac = draw(st.sampled_from(["", ".0", ".00", ".5", ".25", ".01", ".001", ".07", ".071",
                                 ".999", ".000000001"]) | st.from_regex(r"\.[0-9]{1,6}",
                                                                       fullmatch=True))
    exp = ""
    if draw(st.booleans()):
        value = draw(st.integers(-12, 12) | st.integers(-400, 400))
        exp = (draw(st.sampled_from("eE")) + ("-" if value < 0 else draw(st.sampled_from(["", "+"])))
               + "0" * draw(st.integers(0, 2)) + str(abs(value)))
    return sign + whole + frac + exp


def _covered(text: str, *, integer: bool, bounded: bool, multiple: bool) -> bool:
    """Whether the documented sub-language must contain this (valid) spelling."""
    m = _JSON_NUMBER.fullmatch(text)
    if not m.group(3) or Decimal(text) == 0:
        return True
    e = int(m.group(3)[1:])
    if multiple:
        return False
    if bounded:
        return -EXP_WINDOW <= e <= EXP_WINDOW and (not integer or e >= 0)
    if integer:
        frac = (m.group(2) or ".")[1:].rstrip("0")
        return len(frac) <= MAX_FRACTION_DIGITS and e >= -MAX_FRACTION_DIGITS
    return True


_NUMBER_CASES = [
    dict(integer=False), dict(integer=True), dict(integer=False, minimum=0),
    dict(integer=False, maximum=0), dict(integer=True, exclusive_minimum=0),
    dict(integer=False, maximum=1000), dict(integer=True, minimum=1, maximum=1000),
    dict(integer=False, exclusive_minimum=0, exclusive_maximum=1000),
    dict(integer=False, minimum=-1.5, maximum=2.5), dict(integer=False, minimum=0.001),
    dict(integer=True, minimum=-123456, maximum=7890000), dict(integer=False, maximum=-0.07),
    dict(integer=False, minimum=10, exclusive_minimum=10), dict(integer=False, minimum=5, maximum=5),
    dict(integer=False, multiple_of=0.01), dict(integer=True, multiple_of=5),
    dict(integer=False, multiple_of=2.5, minimum=-10, maximum=100), dict(integer=True, multiple_of=0.5),
    dict(integer=False, multiple_of=7), dict(integer=False, minimum=Decimal("0.1"), maximum=1e2),
]


def _reference(text: str, kw: dict) -> bool:
    if not _JSON_NUMBER.fullmatch(text):
        return False
    v = Decimal(text)

    def d(x: object) -> Decimal:
        return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)

    if kw.get("integer") and v != v.to_integral_value():
        return False
    if kw.get("minimum") is not None and v < d(kw["minimum"]):
        return False
    if kw.get("maximum") is not None and v > d(kw["maximum"]):
        return False
    if kw.get("exclusive_minimum") is not None and v <= d(kw["exclusive_minimum"]):
        return False
    if kw.get("exclusive_maximum") is not None and v >= d(kw["exclusive_maximum"]):
        return False
    if kw.get("multiple_of") is not None:
        return (Fraction(v) / Fraction(d(kw["multiple_of"]))).denominator == 1
    return True


@pytest.mark.parametrize("kw", _NUMBER_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
@settings(max_examples=80, deadline=None)
@given(text=_number_texts())
def test_number_exact_and_covered(kw: dict, text: str) -> None:
    dfa = json_number_dfa(**kw)
    accepted = dfa.accepts(text.encode())
    valid = _reference(text, kw)
    assert not accepted or valid, ("accepted an invalid number", text)
    bounded = any(kw.get(k) not in (None, 0) for k in
                  ("minimum", "maximum", "exclusive_minimum", "exclusive_maximum"))
    if valid and _covered(text, integer=kw["integer"] or "multiple_of" in kw and kw["integer"],
                          bounded=bounded, multiple="multiple_of" in kw):
        assert accepted, ("rejected a valid number", text)


@pytest.mark.parametrize("kw", _NUMBER_CASES[:14], ids=str)
@settings(max_examples=60, deadline=None)
@given(value=st.integers(-10**20, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
       | st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**6,
                     max_value=10**6))
def test_number_json_dumps_values(kw: dict, value: object) -> None:
    """Instances as json.dumps writes them (floats with e+16 / e-05 exponents included)."""
    text = json.dumps(float(value) if isinstance(value, Decimal) else value)
    accepted = json_number_dfa(**kw).accepts(text.encode())
    valid = _reference(text, kw)
    assert not accepted or valid, text
    bounded = any(kw.get(k) not in (None, 0) for k in
                  ("minimum", "maximum", "exclusive_minimum", "exclusive_maximum"))
    if valid and _covered(text, integer=kw["integer"], bounded=bounded, multiple=False):
        assert accepted, text


@pytest.mark.parametrize("kw", _NUMBER_CASES + [
    dict(integer=True, minimum=0, maximum=100), dict(integer=True, exclusive_maximum=0),
    dict(integer=False, minimum=-90, maximum=90), dict(integer=True, minimum=0, maximum=65535),
    dict(integer=False, minimum=0.5, exclusive_maximum=1e-3)], ids=str)
def test_canonical_numbers_built_without_exponents(kw: dict) -> None:
    """Canonical spellings have no exponent, so their DFA is built over exponent 0 alone; it
    accepts exactly what the every-spelling DFA accepts in canonical spelling."""
    from structgen.automata.bytedfa import dfa_product
    from structgen.automata.regex import regex_to_dfa
    from structgen.schema.lexemes import _CANONICAL_NUMBER

    canonical = json_number_dfa(canonical=True, **kw)
    every = dfa_product(json_number_dfa(**kw), regex_to_dfa(_CANONICAL_NUMBER), "and")
    assert _same_language(canonical, every)


def test_number_fixed_cases() -> None:
    ints = json_number_dfa(integer=True)
    for text in ["0", "-0", "1.0", "1e2", "1.5e1", "12345678910111213141516171819202122", "1e+308",
                 "100e-2", "-0.0e-99"]:
        assert ints.accepts(text.encode()), text
    for text in ["1.5", "1e-1", "1.25e1", "01", "1.", ".5", "+1", "1e", "-", "0x10", "1.0e-1"]:
        assert not ints.accepts(text.encode()), text
    upto = json_number_dfa(integer=False, maximum=1000)
    assert upto.accepts(b"1e3") and upto.accepts(b"0.00001e8") and not upto.accepts(b"1.0001e3")
    assert json_number_dfa(integer=False, minimum=3, maximum=2).is_empty()
    assert json_number_dfa(integer=False, minimum=2, exclusive_maximum=2).is_empty()
    for bad in [0, -1, 0.000123456789]:
        with pytest.raises(UnsupportedSchemaError) as info:
            json_number_dfa(integer=False, multiple_of=bad)
        assert info.value.keyword == "multipleOf"


_EQUAL_VALUES = ["1", "-1", "7", "128", "3008", "100", "-2500", "0.5", "-12.5", "0.001", "1E+20",
                 "1E-12", "2.5", "123456789012345678901234567890123", "0.000000001", "99.99"]


@settings(max_examples=60, deadline=None)
@given(value=st.sampled_from(_EQUAL_VALUES).map(Decimal)
       | st.decimals(allow_nan=False, allow_infinity=False, min_value=-10**6, max_value=10**6,
                     places=4)
       | st.decimals(allow_nan=False, allow_infinity=False, min_value=-1, max_value=1, places=9)
       | st.integers(-10**25, 10**25).map(Decimal),
       integer=st.booleans(), exponents=st.booleans())
def test_equal_numbers_match_the_comparator_table(value: Decimal, integer: bool,
                                                  exponents: bool) -> None:
    """One value's spellings written as a regex (`_equal_number_dfa`, enums and consts) are
    the language the comparator table builds for the bounds value..value."""
    from structgen.schema.lexemes import _NumberSpec, _equal_number_dfa, _number_table

    if value == 0:
        return
    bound = (value, False)
    table = _number_table(_NumberSpec(integer, bound, bound, None, exponents))
    assert _same_language(_equal_number_dfa(value, integer, exponents), table), value


def test_literals() -> None:
    one = json_literal_dfa(1)
    assert all(one.accepts(t) for t in [b"1", b"1.0", b"1e0", b"100e-2", b"0.1e1"])
    assert not any(one.accepts(t) for t in [b"-1", b"1.01", b"true", b'"1"'])
    assert json_literal_dfa(True).accepts(b"true") and not json_literal_dfa(True).accepts(b"1")
    assert json_literal_dfa(None).accepts(b"null") and not json_literal_dfa(False).accepts(b"true")
    s = json_literal_dfa("a/é")
    assert s.accepts(b'"a\\/\\u00e9"') and s.accepts('"a/é"'.encode()) and not s.accepts(b'"a/e"')
    half = json_literal_dfa(0.5)
    assert half.accepts(b"5e-1") and half.accepts(b"0.50") and not half.accepts(b"0.5000001")


# --- formats ------------------------------------------------------------------------------------

import ipaddress  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

from jsonschema import Draft202012Validator  # noqa: E402

from structgen.schema.formats import FORMATS  # noqa: E402

SUITE = (Path(__file__).resolve().parents[2] / "shared" / "data" / "json-schema-test-suite"
         / "draft2020-12" / "optional" / "format")

# Valid suite values each format rejects by design (documented in structgen/schema/formats.py).
_KNOWN_FALSE_NEGATIVES = {
    "hostname": {"maximum label length (63)", "a valid host name (example.test in Hangul)"},
    "idn-hostname": {"a valid host name (example.test in Hangul)", "valid Chinese Punycode",
                     "ideographic full stop as label separator",
                     "fullwidth full stop as label separator",
                     "halfwidth ideographic full stop as label separator",
                     # longer than 63 characters in total
                     "label too long if separator ignored (full stop)",
                     "label too long if separator ignored (ideographic full stop)",
                     "label too long if separator ignored (fullwidth full stop)",
                     "label too long if separator ignored (halfwidth ideographic full stop)"},
    "idn-email": {"a valid idn e-mail (example@example.test in Hangul)",
                  "a non-ASCII local part with an ASCII domain is valid",
                  "a non-ASCII quoted local part is valid",
                  "a domain label that is not in Unicode NFC is valid",
                  "a local part that is not in Unicode NFC is valid",
                  "a C1 control in the local part is valid",
                  "a noncharacter in the local part is valid",
                  "a local part with a supplementary-plane character is valid"},
}


def _python_format_ok(name: str, value: str) -> bool:
    schema = {"format": name}
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER
                                ).is_valid(value)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_format_against_official_suite(name: str) -> None:
    path = SUITE / f"{name}.json"
    if not path.exists():
        pytest.skip(f"official JSON Schema test suite missing at {SUITE}")
    dfa = json_string_dfa(format=name)
    false_negatives = set()
    for group in json.loads(path.read_text()):
        for case in group["tests"]:
            value = case["data"]
            if not isinstance(value, str):
                continue
            accepted = dfa.accepts(json.dumps(value).encode())
            assert accepted == dfa.accepts(json.dumps(value, ensure_ascii=False).encode(
                "utf-8", "surrogatepass"))
            if accepted:
                assert case["valid"] and _python_format_ok(name, value), (name, value)
            elif case["valid"] and not case["description"].startswith(
                    ("Exceptions that are PVALID", "MIDDLE DOT", "Greek KERAIA", "Hebrew G",
                     "KATAKANA", "Arabic-Indic", "Extended Arabic", "ZERO WIDTH")):
                false_negatives.add(case["description"])
    assert false_negatives == _KNOWN_FALSE_NEGATIVES.get(name, set())


def test_format_refusals_and_combinations() -> None:
    for name in ["regex", "color", "unknown-format"]:
        with pytest.raises(UnsupportedSchemaError) as info:
            json_string_dfa(format=name)
        assert info.value.keyword == "format"
    d = json_string_dfa(format="date", pattern="^2024-")
    assert d.accepts(b'"2024-02-29"') and not d.accepts(b'"2023-02-28"')
    assert not d.accepts(b'"2024-02-30"') and d.accepts(b'"\\u0032024-01-01"')
    leap = json_string_dfa(format="time")
    for text in ["05:44:60+05:45", "18:14:60-05:45", "23:59:60.5z", "11:59:60+12:00"]:
        assert leap.accepts(json.dumps(text).encode()), text
    for text in ["00:00:60+00:01", "23:59:60+00:45", "05:45:60+05:45", "23:59:61Z"]:
        assert not leap.accepts(json.dumps(text).encode()), text
    assert json_string_dfa(format="uuid", max_length=35).is_empty()
    assert json_string_dfa(format="date", min_length=11).is_empty()
    ip14 = json_string_dfa(format="ipv4", max_length=14)
    assert ip14.accepts(b'"10.0.0.1"') and not ip14.accepts(b'"255.255.255.255"')
    stamp = json_string_dfa(format="date-time", min_length=20)  # vacuous: no counter needed
    assert stamp.accepts(b'"2024-02-29T12:00:00Z"') and not stamp.accepts(b'"2023-02-29T12:00:00Z"')
    # under a length bound too large to enforce exactly, the documented COMPACT narrowing
    mail = json_string_dfa(format="email", max_length=254)
    assert mail.accepts(b'"a.b@example.com"') and not mail.accepts(b'"a.@example.com"')
    assert not mail.accepts(b'"a@[127.0.0.1]"') and not mail.accepts(b'"\\"a b\\"@x.com"')
    assert not mail.accepts(json.dumps("a@" + "b" * 253).encode())
    short = json_string_dfa(format="date-time", max_length=40)
    assert short.accepts(b'"1998-12-31T23:59:60Z"') and short.accepts(b'"1998-12-31T23:59:59.5+01:00"')
    assert not short.accepts(b'"1998-12-31T15:59:60-08:00"')
    assert not short.accepts(json.dumps("1998-12-31T23:59:59." + "1" * 20 + "Z").encode())
    host = json_string_dfa(format="hostname", max_length=10)
    assert host.accepts(b'"ab.example"') and not host.accepts(b'"abc.example"')
    assert json_string_dfa(format="uuid", literals=["x", "12345678-1234-1234-1234-123456789ABC"]
                           ).accepts(b'"12345678-1234-1234-1234-123456789ABC"')


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**128 - 1), st.integers(0, 2**32 - 1), st.booleans(), st.randoms(
    use_true_random=False))
def test_ipv6_against_ipaddress(value: int, v4: int, embed: bool, rng: random.Random) -> None:
    dfa = json_string_dfa(format="ipv6")
    addr = ipaddress.IPv6Address(value)
    texts = [addr.exploded, addr.compressed, addr.compressed.upper()]
    if embed:
        texts.append(addr.exploded[:30] + str(ipaddress.IPv4Address(v4)))
        texts.append("::ffff:" + str(ipaddress.IPv4Address(v4)))
    # mutations: drop / duplicate a character, an extra group, zero-padded IPv4 octets
    for t in list(texts):
        i = rng.randrange(len(t))
        texts += [t[:i] + t[i + 1:], t[:i] + t[i] + t[i:], t + ":1", t.replace(".", ".0", 1)]
    for text in texts:
        try:
            expected = not getattr(ipaddress.IPv6Address(text), "scope_id", "")
        except ValueError:
            expected = False
        assert dfa.accepts(json.dumps(text).encode()) == expected, text


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 999), st.sampled_from(
    ["{}.{}.{}.{}", "{:03d}.{}.{}.{}", "{}.{}.{}", "{}.{}.{}.{}.{}"]))
def test_ipv4_against_ipaddress(a: int, b: int, c: int, shape: str) -> None:
    text = shape.format(a, b, c, a, b)
    try:
        expected = bool(ipaddress.IPv4Address(text))
    except ValueError:
        expected = False
    assert json_string_dfa(format="ipv4").accepts(json.dumps(text).encode()) == expected, text


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10000), st.integers(0, 13), st.integers(0, 32))
def test_date_against_python(year: int, month: int, day: int) -> None:
    text = f"{year:04d}-{month:02d}-{day:02d}"
    try:
        expected = date.fromisoformat(text) is not None
    except ValueError:
        expected = False
    assert json_string_dfa(format="date").accepts(json.dumps(text).encode()) == expected, text


def _co_reachable(dfa) -> bool:
    """Every state reaches acceptance and is reached from the start (what makes masks exact)."""
    t = dfa.transitions
    live = dfa.accepting.copy()
    while True:
        nxt = live | ((t >= 0) & live[np.where(t >= 0, t, 0)]).any(axis=1)
        if (nxt == live).all():
            break
        live = nxt
    seen = np.zeros(dfa.n_states, bool)
    seen[dfa.initial] = True
    while True:
        nxt = seen.copy()
        nxt[t[seen][t[seen] >= 0]] = True
        if (nxt == seen).all():
            break
        seen = nxt
    return bool(live.all() and seen.all())


@pytest.mark.parametrize("dfa", [
    lambda: json_string_dfa(), lambda: json_string_dfa(min_length=2, max_length=5),
    lambda: json_string_dfa(pattern="^a.{2}😀", max_length=6), lambda: json_string_dfa(
        literals=["a", "é😀"], exclude=["a"]), lambda: json_string_dfa(format="date-time"),
    lambda: json_string_dfa(format="iri", min_length=3), lambda: json_number_dfa(integer=True),
    lambda: json_number_dfa(integer=False, minimum=-1.5, exclusive_maximum=20, multiple_of=0.25),
], ids=range(8))
def test_dfas_are_trimmed(dfa) -> None:
    assert _co_reachable(dfa())


# --- literal and excluded-literal fast paths ---------------------------------------------------

def _same_language(a, b) -> bool:
    from structgen.automata.bytedfa import dfa_product

    return dfa_product(a, b, "andnot").is_empty() and dfa_product(b, a, "andnot").is_empty()


def _general(literals, exclude, canonical):
    """`_string_dfa` through the general construction (interegular FSM, `spelled_tables`)."""
    from structgen.schema import lexemes as L

    saved = L._literals_dfa, L._excluded_dfa
    L._literals_dfa = L._excluded_dfa = lambda *a: None
    try:
        return L._string_dfa(None, 0, None, None, literals, exclude, False, canonical)
    finally:
        L._literals_dfa, L._excluded_dfa = saved


_LITERAL_CHARS = 'ab"\\/\n\t\x01\x7fé€😀 Zz~\u2028'


def _literal_sets(n: int, seed: int) -> list[tuple[str, ...]]:
    rnd = random.Random(seed)
    out = [("name",), ("a", "ab", "abc"), ("",), ("", "x"), ('q"uo\\te\n', "é", "😀x", "\x00\x1f"),
           ("type", "title", "tags"), ("id", "name", "description", "created_at", "updated_at")]
    for _ in range(n):
        out.append(tuple(sorted({"".join(rnd.choice(_LITERAL_CHARS) for _ in range(rnd.randint(0, 5)))
                                 for _ in range(rnd.randint(1, 4))})))
    return out


@pytest.mark.parametrize("canonical", [False, True])
def test_literal_fast_path_equals_general_construction(canonical):
    from structgen.schema.lexemes import _literals_dfa

    for lits in _literal_sets(120, 1):
        fast = _literals_dfa(lits, canonical)
        assert fast is not None
        assert _same_language(fast, _general(lits, (), canonical)), lits
    assert not _same_language(_literals_dfa(("name",), canonical),
                              _general(("namf",), (), canonical))  # the check can fail


@pytest.mark.parametrize("canonical", [False, True])
def test_excluded_fast_path_equals_general_construction(canonical):
    from structgen.schema.lexemes import _excluded_dfa

    for excl in _literal_sets(120, 2):
        fast = _excluded_dfa(excl, canonical)
        assert fast is not None
        assert _same_language(fast, _general(None, excl, canonical)), excl
        for w in excl:
            assert not fast.accepts(json.dumps(w, ensure_ascii=False).encode())
            assert not fast.accepts(json.dumps(w).encode())
        assert fast.accepts(json.dumps("".join(excl) + "!", ensure_ascii=False).encode())


def test_literal_fast_paths_leave_lone_surrogates_to_the_general_construction():
    from structgen.schema.lexemes import _excluded_dfa, _literals_dfa

    assert _literals_dfa(("a\ud800", "b"), False) is None
    assert _excluded_dfa(("a\ud800",), False) is None
    # through the public entry: the lone surrogate value has no spelling, "b" stays
    dfa = json_string_dfa(literals=["a\ud800", "b"])
    assert dfa.accepts(b'"b"') and not dfa.accepts(b'"a\\ud800"')
    dfa = json_string_dfa(exclude=["a\ud800"])
    assert dfa.accepts(b'"a"') and not dfa.accepts(b'"a\\ud800"')


def test_literal_fast_path_filters_by_exclude_and_length():
    dfa = json_string_dfa(literals=["a", "bb", "ccc", "dd"], exclude=["dd"], min_length=2,
                          max_length=2)
    assert [w for w in ("a", "bb", "ccc", "dd") if dfa.accepts(json.dumps(w).encode())] == ["bb"]
    assert json_string_dfa(literals=["a"], exclude=["a"]).is_empty()
