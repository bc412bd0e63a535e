"""Python regex syntax → the dialect interegular parses, with exact (never widened) semantics.

interegular's parser (whose trees `positions.py` turns into DFAs) differs from Python's `re` in
a few places: it reads `\\D`, `\\S`, `\\W` as complements of ASCII classes (wider than
Python's Unicode classes), it silently approximates lookarounds, and it lacks some escapes. This
module rewrites a pattern so that the language of the parse is always a subset of what
`re.fullmatch` accepts, and refuses — with the construct and its position — whatever cannot be
enforced by a finite automaton.

Documented narrowing: `\\d`, `\\w`, `\\s` match their ASCII members only (as with `re.ASCII`);
`\\W` matches ASCII non-word characters only. `\\D` and `\\S` are exact Unicode complements.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache

from ..errors import RegexSyntaxError, UnsupportedRegexError

_ASCII_NON_WORD = "".join(chr(c) for c in range(128) if not re.fullmatch(r"\w", chr(c)))
_OCTAL = "01234567"
# A class no character matches: a lone surrogate has no UTF-8 encoding, so the byte DFA drops it
# (spelling "nothing" as [^\x00-\U0010ffff] instead makes interegular enumerate 1.1M characters).
_NOTHING = "[" + chr(0xD800) + "]"


@lru_cache(maxsize=1)
def _unicode_digits() -> str:
    """Every code point Python's Unicode `\\d` matches (category Nd)."""
    return "".join(
        chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Nd"
    )


@lru_cache(maxsize=1)
def _unicode_spaces() -> str:
    """Every code point Python's Unicode `\\s` matches."""
    return "".join(chr(c) for c in range(0x3001) if chr(c).isspace() or re.match(r"\s", chr(c)))


@lru_cache(maxsize=1)
def _cased() -> tuple[str, ...]:
    """Every code point with a case mapping, plus every character such a mapping produces.

    Outside this set, Python's case-insensitive matching is plain equality (a caseless
    character is its own lower and upper case), so `(?i)` only ever changes how these match.
    """
    out: set[str] = set()
    for c in range(sys.maxunicode + 1):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        for mapped in (ch.lower(), ch.upper(), ch.casefold(), ch.title()):
            if mapped != ch:
                out.add(ch)
                out.update(mapped)
    return tuple(sorted(out))


@lru_cache(maxsize=4096)
def _icase_literal(ch: str) -> str:
    """One character under `(?i)`: the class of exactly what Python's `(?i)` literal matches."""
    rx = re.compile("(?i)" + re.escape(ch))
    same = [c for c in _cased() if rx.fullmatch(c)]
    if len(same) <= 1:
        return _literal(ch)
    return _pos_class("".join(same))


def _icase_class(text: str) -> str:
    """A (rewritten, case-sensitive) class made to match what Python's `(?i)` version matches.

    Only cased characters can change; caseless ones match exactly as without the flag."""
    if not text.startswith("["):
        return text  # "(?s:.)": already everything
    rx = re.compile("(?i)" + text)
    negated = text.startswith("[^")
    extra = [c for c in _cased() if (rx.fullmatch(c) is None) == negated]
    return text[:-1] + "".join(_class_escape(c) for c in extra) + "]"


def _class_escape(ch: str) -> str:
    """Escape one character for use inside `[...]`."""
    if ch in "\\]^-[":
        return "\\" + ch
    if ch == "\n":
        return "\\n"
    return ch


def _literal(ch: str) -> str:
    """Escape one character for use outside a class."""
    return re.escape(ch) if ch != " " else " "


def _neg_class(chars: str) -> str:
    return "[^" + "".join(_class_escape(c) for c in chars) + "]"


def _pos_class(chars: str) -> str:
    if not chars:
        raise ValueError("empty class")
    return "[" + "".join(_class_escape(c) for c in chars) + "]"


class _Scanner:
    """Single pass over the pattern; emits the rewritten pattern or raises."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.out: list[str] = []
        # `(?i)` is applied here (with Python's case rules), never passed on to interegular,
        # whose str.lower/str.upper folding both misses and invents equivalences.
        self.icase = False
        self.icase_stack: list[bool] = []

    def literal(self, ch: str) -> str:
        return _icase_literal(ch) if self.icase else _literal(ch)

    def fail(self, construct: str, pos: int) -> None:
        raise UnsupportedRegexError(construct, self.p, pos)

    def run(self) -> str:
        p, n = self.p, len(self.p)
        i = 0
        if p.startswith("^"):
            i = 1
        end = n
        if p.endswith("$") and not _escaped(p, n - 1) and n - 1 >= i:
            end = n - 1
        while i < end:
            c = p[i]
            if c == "\\":
                i = self.escape(i)
            elif c == "[":
                i = self.char_class(i)
            elif c == "(":
                i = self.group_open(i)
            elif c == ")":
                self.icase = self.icase_stack.pop() if self.icase_stack else self.icase
                self.out.append(c)
                i += 1
            elif c == "^" and not self.out and not self.icase_stack:
                i += 1  # still at the start (after global flags or a comment): a no-op
            elif c in "^$":
                self.fail(f"anchor {c!r} (only a leading '^' and a trailing '$' are allowed)", i)
            elif c in "*+?" and i + 1 < end and p[i + 1] == "+":
                self.fail("possessive quantifier", i + 1)
            elif c == "{":
                m = _REPEAT.match(p, i)
                if m and (m.group(1) or m.group(2)):
                    if m.end() < end and p[m.end()] == "+":
                        self.fail("possessive quantifier", m.end())
                    self.out.append(m.group(0))  # a repeat: copied whole
                    i = m.end()
                else:
                    self.out.append("\\{")  # Python reads a literal brace; interegular cannot
                    i += 1
            elif c == "}":
                self.out.append("\\}")  # repeats are copied whole, so this one is literal
                i += 1
            elif self.icase and c not in "*+?,|.":
                self.out.append(self.literal(c))
                i += 1
            else:
                self.out.append(c)
                i += 1
        return "".join(self.out)

    def escape(self, i: int) -> int:
        """Rewrite the escape starting at p[i] == '\\' outside a class."""
        p = self.p
        ch, j = _read_escape(p, i, in_class=False)
        if ch is not None:
            self.out.append(self.literal(ch))
            return j
        e = p[i + 1]
        if e in "123456789":
            self.fail(f"backreference \\{e}", i)
        if e in "bBAZ":
            self.fail(f"anchor \\{e}", i)
        if e == "D":
            self.out.append(_neg_class("0123456789" + _unicode_digits()))
        elif e == "S":
            self.out.append(_neg_class(_unicode_spaces()))
        elif e == "W":
            self.out.append(_pos_class(_ASCII_NON_WORD))
        else:
            self.out.append(p[i : i + 2])
        return i + 2

    def group_open(self, i: int) -> int:
        p = self.p
        self.icase_stack.append(self.icase)
        if not p.startswith("(?", i):
            self.out.append("(")
            return i + 1
        rest = p[i + 2 : i + 4]
        if rest.startswith(("=", "!")) or rest in ("<=", "<!"):
            self.fail("lookaround", i)
        if rest.startswith("P="):
            self.fail("named backreference", i)
        if rest.startswith("("):
            self.fail("conditional group", i)
        if rest.startswith(">"):
            self.fail("atomic group", i)
        if rest.startswith("#"):
            self.icase_stack.pop()
            close = p.find(")", i)
            return close + 1
        m = re.match(r"\(\?([aiLmsux]*)(?:-([imsx]*))?([:)])", p[i:])
        if m:
            on, off, kind = m.group(1), m.group(2) or "", m.group(3)
            if "x" in on + off:
                self.fail("verbose flag (?x)", i)
            if "L" in on:
                self.fail("locale flag (?L)", i)
            if "m" in on + off and kind == ":":
                pass  # only affects ^/$, which are refused anyway
            if kind == ")":  # global flags (Python only allows them at the start)
                self.icase_stack.pop()
                self.icase = self.icase or "i" in on
            elif "i" in on:
                self.icase = True
            elif "i" in off:
                self.icase = False
            kept = "".join(f for f in on if f == "s")
            dropped = "".join(f for f in off if f == "s")
            if kind == ")" and not kept and not dropped:
                return i + len(m.group(0))
            flags = kept + ("-" + dropped if dropped else "")
            if kind == ":" and not flags:
                self.out.append("(?:")
            else:
                self.out.append(f"(?{flags}{kind}")
            return i + len(m.group(0))
        self.out.append("(")
        return i + 1

    def char_class(self, i: int) -> int:
        """Rewrite `[...]` so it never matches more than Python's class does."""
        p = self.p
        j = i + 1
        negated = j < len(p) and p[j] == "^"
        if negated:
            j += 1
        items: list[str] = []  # rewritten pieces (literals escaped, ranges kept)
        shorthands: list[str] = []
        first = True
        while j < len(p) and (p[j] != "]" or first):
            first = False
            if p[j] == "\\":
                ch, k = _read_escape(p, j, in_class=True)
                if ch is not None:
                    items.append(_class_escape(ch))
                    j = k
                    continue
                e = p[j + 1]
                if e in "dswDSW":
                    shorthands.append(e)
                else:
                    items.append(p[j : j + 2])
                j += 2
            elif p[j] == "[" and p[j + 1 : j + 2] == ":":
                self.fail("POSIX class", j)
            else:
                items.append(_class_escape(p[j]) if p[j] != "-" else "-")
                j += 1
        body = "".join(items)
        text = self._class_text(negated, body, shorthands, i, p[i : j + 1], self.icase)
        self.out.append(_icase_class(text) if self.icase else text)
        return j + 1

    def _class_text(
        self, negated: bool, body: str, shorthands: list[str], pos: int, original: str,
        icase: bool = False,
    ) -> str:
        complements = [s for s in shorthands if s in "DSW"]
        if not shorthands:
            return f"[{'^' if negated else ''}{body}]"
        if body.endswith("-") and not _escaped(body, len(body) - 1):
            body = body[:-1] + "\\-"  # a trailing literal '-' would range into appended members
        if len(complements) > 1 or (complements and any(s.upper() != s for s in shorthands)):
            if {s.lower() for s in shorthands} == {shorthands[0].lower()} and not body and not negated:
                return "(?s:.)"  # [\s\S] and friends: any character
            self.fail("combination of shorthand classes inside one character class", pos)
        if negated and ("w" in shorthands or "W" in shorthands):
            # [^...\w...] must also exclude non-ASCII word characters: narrow to ASCII.
            flags = re.IGNORECASE if icase else 0  # [^\wA] under (?i) excludes 'a' too
            allowed = "".join(chr(c) for c in range(128) if re.fullmatch(original, chr(c), flags))
            return _pos_class(allowed) if allowed else _NOTHING
        if complements == ["W"]:
            if negated:
                self.fail("\\W inside a negated character class", pos)
            return "[" + body + "".join(_class_escape(c) for c in _ASCII_NON_WORD) + "]"
        if complements:
            base = "0123456789" + _unicode_digits() if complements[0] == "D" else _unicode_spaces()
            others = f"[{body}]" if body else None
            kept = "".join(c for c in base if not (others and re.fullmatch(others, c)))
            if not negated:  # \S ∪ items == everything except the spaces items don't cover
                return _neg_class(kept) if kept else "(?s:.)"
            return _pos_class(kept) if kept else _NOTHING
        extra = {"d": "0-9", "s": " \\t\\n\\r\\f\\v", "w": "a-zA-Z0-9_"}
        if negated:
            # [^\d] must also exclude non-ASCII digits; [^\s] non-ASCII spaces.
            exact = {"d": "0123456789" + _unicode_digits(), "s": _unicode_spaces()}
            body += "".join("".join(_class_escape(c) for c in exact[s]) for s in shorthands)
            return f"[^{body}]"
        return "[" + body + "".join(extra[s] for s in shorthands) + "]"


_REPEAT = re.compile(r"\{(\d*)(,?)(\d*)\}")


def _escaped(p: str, i: int) -> bool:
    """Whether p[i] is preceded by an odd number of backslashes."""
    k = i - 1
    while k >= 0 and p[k] == "\\":
        k -= 1
    return (i - 1 - k) % 2 == 1


def _read_escape(p: str, i: int, in_class: bool) -> tuple[str | None, int]:
    """Decode escapes that denote one literal character (\\x, \\u, \\U, \\N{}, octal).

    Returns (character, index after it) or (None, i) when the escape is something else."""
    e = p[i + 1]
    if e == "x":
        return chr(int(p[i + 2 : i + 4], 16)), i + 4
    if e == "u":
        return chr(int(p[i + 2 : i + 6], 16)), i + 6
    if e == "U":
        return chr(int(p[i + 2 : i + 10], 16)), i + 10
    if e == "N":
        close = p.index("}", i)
        return unicodedata.lookup(p[i + 3 : close]), close + 1
    if e == "0" or (e in _OCTAL and (in_class or _is_octal3(p, i + 1))):
        k = i + 1
        while k < len(p) and k < i + 4 and p[k] in _OCTAL:
            k += 1
        return chr(int(p[i + 1 : k], 8)), k
    if in_class and e == "b":
        return "\b", i + 2
    return None, i


def _is_octal3(p: str, j: int) -> bool:
    return len(p) >= j + 3 and all(c in _OCTAL for c in p[j : j + 3])


def to_interegular(pattern: str) -> str:
    """Check `pattern` with Python's own parser, then rewrite it for interegular."""
    try:
        re.compile(pattern)
    except re.error as e:
        raise RegexSyntaxError(e.msg, pattern, e.pos) from None
    return _Scanner(pattern).run()
