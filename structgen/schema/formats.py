"""The `format` keyword as exact character languages (JSON Schema draft 2020-12 formats).

Each format is a Python-syntax regular expression (full match) over the *decoded* string,
written from the RFC grammar the spec cites, intersected with what Python's `jsonschema` format
checker accepts where that is stricter (so outputs pass both). Where the exact language is not
regular or needs an automaton too large to build, the language is narrowed — never widened —
and the narrowing is listed here (valid values rejected, i.e. false negatives):

- date, date-time: year 0000 (Python's `date` cannot hold it; the RFC allows it).
- time, date-time: a leap second (second 60, which must be 23:59 UTC) only with Z, z or an
  offset whose minutes are 00, 30 or 45 (every offset in use): an exact check across all 2880
  offsets needs ~10k states per time; e.g. 00:00:60+00:01 is rejected.
- hostname, idn-hostname: ASCII LDH labels only, at most 63 characters in total (the limit is
  253; counting labels of 63 within 253 needs ~85k states); A-labels (`xn--...`, whose validity
  needs Punycode and IDNA tables) and other labels with "--" in positions 3-4 are rejected.
  idn-hostname: Unicode labels are rejected.
- email, idn-email: RFC 5321 Mailbox without length limits; address literals are IPv4 and
  `IPv6:` (exact case) only — general address literals need an IANA-registered tag.
  idn-email: non-ASCII characters are rejected.

Under a length bound whose exact automaton would be too large, email/idn-email drop quoted
local parts and address literals, and time/date-time drop leap seconds at nonzero offsets
(COMPACT), before giving up.

Not supported (UnsupportedSchemaError "format"): "regex" (valid ECMA-262 regexes are not a
regular language) and any unknown format name.
"""
from __future__ import annotations

from functools import lru_cache

import interegular
from interegular.fsm import FSM

from ..automata.positions import to_fsm
from ..automata.regex_syntax import to_interegular
from ..errors import UnsupportedSchemaError

# --- building blocks --------------------------------------------------------------------------

_HEX = "[0-9A-Fa-f]"
_DEC_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"  # no leading zeros (Python agrees)
IPV4 = rf"{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}}"
_H16 = _HEX + "{1,4}"


def _groups(n: int) -> str:
    """n colon-separated 16-bit hex groups."""
    return ":".join([_H16] * n)


def _ipv6(max_compressed: int, max_v4_compressed: int) -> str:
    """IPv6 text forms: 8 groups, 6 groups + IPv4, or '::' with at most `max_compressed` groups
    around it (`max_v4_compressed` when an IPv4 tail follows). One alternative per group count
    left of '::' keeps the regex small (its DFA construction time grows with it)."""
    forms = [_groups(8), _groups(6) + ":" + IPV4]
    for left in range(max_compressed + 1):
        room = max_compressed - left
        right = f"(?:{_H16}(?::{_H16}){{0,{room - 1}}})?" if room else ""
        forms.append(_groups(left) + "::" + right)
    for left in range(max_v4_compressed + 1):
        forms.append(_groups(left) + "::" + f"(?:{_H16}:){{0,{max_v4_compressed - left}}}" + IPV4)
    return "(?:" + "|".join(forms) + ")"


IPV6 = _ipv6(7, 5)  # RFC 4291: '::' stands for one or more groups
_IPV6_5321 = _ipv6(6, 4)  # RFC 5321 IPv6-comp: at most 6 groups besides '::'

# dates and times (RFC 3339 section 5.6)
_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE = (
    f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    f"|{_LEAP_YEAR}-02-29)"
)
_FRAC = r"(?:\.[0-9]+)?"
_LEAP_OFFSET_MINUTES = (0, 30, 45)  # the minutes of every UTC offset in use


def _leap_seconds() -> str:
    """Local times hh:mm:60 that are 23:59:60 UTC, each with the offsets that make it so."""
    by_local: dict[str, list[str]] = {"23:59": ["[Zz]"]}
    for sign in (1, -1):
        for hours in range(24):
            for minutes in _LEAP_OFFSET_MINUTES:
                local = (23 * 60 + 59 + sign * (hours * 60 + minutes)) % (24 * 60)
                offset = f"\\{'+' if sign > 0 else '-'}{hours:02d}:{minutes:02d}"
                by_local.setdefault(f"{local // 60:02d}:{local % 60:02d}", []).append(offset)
    by_hour: dict[str, list[str]] = {}
    for hm, offsets in sorted(by_local.items()):
        hour, minute = hm.split(":")
        by_hour.setdefault(hour, []).append(f"{minute}:60{_FRAC}(?:{'|'.join(offsets)})")
    return "(?:" + "|".join(f"{h}:(?:{'|'.join(rest)})" for h, rest in by_hour.items()) + ")"


TIME = (
    rf"(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]{_FRAC}(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
    rf"|{_leap_seconds()})"
)
DATE_TIME = f"{DATE}[Tt]{TIME}"
# without leap seconds at nonzero offsets: ~20x fewer states, for use under a length bound
_TIME_UTC_LEAP = (
    rf"(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]{_FRAC}(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
    rf"|23:59:60{_FRAC}(?:[Zz]|[+-]00:00))"
)
_DT = "(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
DURATION = (
    "P(?:(?:[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)(?:T" + _DT + ")?"
    "|T" + _DT + "|[0-9]+W)"
)

# hostnames (RFC 1123 labels; labels with "--" in positions 3-4 are reserved, RFC 5891 4.2.3.1)
_A = "[A-Za-z0-9]"
_L = "[A-Za-z0-9-]"
_LABEL = f"(?:{_A}|{_A}{_A}|{_A}{_L}{_A}|{_A}{_L}{_L}{_A}|{_A}{_L}(?:{_A}{_L}|-{_A}){_L}*{_A})"
HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*"
HOSTNAME_MAX_LENGTH = 63

# e-mail (RFC 5321 section 4.1.2 Mailbox)
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
_LOCAL = rf'(?:{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*")'
_SUB_DOMAIN = f"{_A}(?:{_L}*{_A})?"
EMAIL = rf"{_LOCAL}@(?:{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*|\[(?:{IPV4}|IPv6:{_IPV6_5321})\])"
# no quoted local parts, no address literals
_EMAIL_DOT_ATOMS = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"

# URIs (RFC 3986) and IRIs (RFC 3987). The IRI character classes are huge, so the regexes use
# one placeholder character for each (controls that no format admits), replaced by their ranges
# when the FSM is lifted: interegular would otherwise enumerate ~1M characters.
_UCS, _PRIVATE = "\x01", "\x02"
CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    _UCS: ((0xA0, 0xD7FF), (0xF900, 0xFDCF), (0xFDF0, 0xFFEF))
    + tuple((p << 16, (p << 16) + 0xFFFD) for p in range(1, 14)) + ((0xE1000, 0xEFFFD),),
    _PRIVATE: ((0xE000, 0xF8FF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD)),
}
_PCT = f"%{_HEX}{{2}}"
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = "!$&'()*+,;="


def _uri(iri: bool, reference: bool) -> str:
    """RFC 3986 URI / URI-reference, or with `iri` RFC 3987's IRI / IRI-reference."""
    unres = _UNRESERVED + (_UCS if iri else "")
    pchar = f"(?:[{unres}{_SUB_DELIMS}:@]|{_PCT})"
    pchar_nc = f"(?:[{unres}{_SUB_DELIMS}@]|{_PCT})"
    userinfo = f"(?:[{unres}{_SUB_DELIMS}:]|{_PCT})*"
    ip_literal = rf"\[(?:{IPV6}|[vV]{_HEX}+\.[{_UNRESERVED}{_SUB_DELIMS}:]+)\]"
    host = f"(?:{ip_literal}|(?:[{unres}{_SUB_DELIMS}]|{_PCT})*)"  # IPv4 is a reg-name too
    authority = f"(?:{userinfo}@)?{host}(?::[0-9]*)?"
    segments = f"(?:/{pchar}*)*"
    query_chars = f"(?:{pchar}|[/?" + (_PRIVATE if iri else "") + "])*"
    tail = rf"(?:\?{query_chars})?(?:#(?:{pchar}|[/?])*)?"
    hier = f"(?://{authority}{segments}|/(?:{pchar}+{segments})?|{pchar}+{segments}|)"
    absolute = f"[A-Za-z][A-Za-z0-9+\\-.]*:{hier}{tail}"
    if not reference:
        return absolute
    relative = f"(?://{authority}{segments}|/(?:{pchar}+{segments})?|{pchar_nc}+{segments}|){tail}"
    return f"(?:{absolute}|{relative})"


# RFC 6570 literals, with the apostrophe (%x27) its errata and the official suite admit
_VARCHAR = f"(?:[A-Za-z0-9_]|{_PCT})"
_VARSPEC = rf"{_VARCHAR}(?:\.?{_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\*)?"
URI_TEMPLATE = (
    rf"(?:[\x21\x23\x24\x26-\x3b\x3d\x3f-\x5b\x5d\x5f\x61-\x7a\x7e{_UCS}{_PRIVATE}]|{_PCT}"
    rf"|\{{[+#./;?&=,!@|]?{_VARSPEC}(?:,{_VARSPEC})*\}})*"
)
JSON_POINTER = "(?:/(?:[^/~]|~[01])*)*"
RELATIVE_JSON_POINTER = f"(?:0|[1-9][0-9]*)(?:#|{JSON_POINTER})"
UUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"

FORMATS: dict[str, tuple[str, int | None]] = {
    "date": (DATE, None),
    "time": (TIME, None),
    "date-time": (DATE_TIME, None),
    "duration": (DURATION, None),
    "email": (EMAIL, None),
    "idn-email": (EMAIL, None),
    "hostname": (HOSTNAME, HOSTNAME_MAX_LENGTH),
    "idn-hostname": (HOSTNAME, HOSTNAME_MAX_LENGTH),
    "ipv4": (IPV4, None),
    "ipv6": (IPV6, None),
    "uri": (_uri(iri=False, reference=False), None),
    "uri-reference": (_uri(iri=False, reference=True), None),
    "iri": (_uri(iri=True, reference=False), None),
    "iri-reference": (_uri(iri=True, reference=True), None),
    "uri-template": (URI_TEMPLATE, None),
    "json-pointer": (JSON_POINTER, None),
    "relative-json-pointer": (RELATIVE_JSON_POINTER, None),
    "uuid": (UUID, None),
}

# Narrower variants, used only when the exact language times a length bound is too large:
# email without quoted local parts and address literals (whose IPv6 part is most of the
# automaton), times without leap seconds at nonzero offsets.
COMPACT: dict[str, str] = {
    "email": _EMAIL_DOT_ATOMS,
    "idn-email": _EMAIL_DOT_ATOMS,
    "time": _TIME_UTC_LEAP,
    "date-time": f"{DATE}[Tt]{_TIME_UTC_LEAP}",
}


@lru_cache(maxsize=None)
def format_language(name: str, compact: bool = False
                    ) -> tuple[FSM, int | None, dict[str, tuple[tuple[int, int], ...]]]:
    """(character FSM of the format's values, maximum length in code points or None,
    placeholder characters of the FSM → the code point ranges they stand for); `compact`
    selects the narrower variant in COMPACT where there is one."""
    if name == "regex":
        raise UnsupportedSchemaError(
            "format", "'regex': the set of valid ECMA-262 regular expressions is not regular")
    if name not in FORMATS:
        raise UnsupportedSchemaError("format", f"unknown format {name!r}")
    regex, max_length = FORMATS[name]
    if compact:
        regex = COMPACT.get(name, regex)
    classes = CLASSES if name in ("iri", "iri-reference", "uri-template") else {}
    return to_fsm(interegular.parse_pattern(to_interegular(regex))), max_length, classes
