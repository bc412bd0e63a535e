"""llama.cpp GBNF → Lark grammar text, preserving the language exactly.

GBNF has no lexer: every string literal and character class stands for itself. The translation
makes each of them an anonymous Lark terminal written inline in the rule (a ``"string"``
literal or a one-character ``/[class]/`` regex) and emits no ``%ignore``, so under the
dynamic-lexer semantics (a text is a sentence iff it splits into lexemes, each fully matching its
terminal, whose terminal sequence the CFG derives) the Lark grammar has exactly the GBNF
language.

Supported GBNF: rules ``name ::= alternatives`` (names of letters, digits, ``-`` and ``_``;
``root`` is the start rule), alternation ``|``, grouping ``( )``, postfix ``? * +``,
``{m}``, ``{m,}``, ``{m,n}`` and ``{,n}``, string literals with escapes (``\\n \\r \\t \\\\
\\" \\' \\[ \\] \\- \\^ \\/ \\xNN \\uNNNN \\UNNNNNNNN``), character classes ``[...]`` with ranges
and ``^`` negation, ``.`` (any character, newline included), ``#`` comments, rules spanning
several lines (a rule runs until the next ``name ::=``; this accepts everything llama.cpp does,
plus continuation lines that llama.cpp only allows after ``|``, ``::=`` or inside parentheses).

Rule names become Lark rule names: lowercased, ``-`` → ``_``, prefixed with ``g_`` when they
would not start with a lowercase letter; a name that would collide with another gets a numeric
suffix. Repetitions ``{m,n}`` become Lark's ``item ~ m..n`` (``{m,}`` becomes
``item ~ m item*``); Lark expands them into rules, so very large bounds make large grammars.
"""
from __future__ import annotations

import re

__all__ = ["gbnf_to_lark"]

_MAX_REPEAT = 10_000


def _error(message: str, text: str, pos: int):
    from ..errors import GrammarError

    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return GrammarError(f"GBNF: {message}", line=line, column=column)


_SIMPLE_ESCAPES = {
    "n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'", "[": "[", "]": "]",
    "-": "-", "^": "^", "/": "/",
}
_HEX_LEN = {"x": 2, "u": 4, "U": 8}
_NAME_CHARS = re.compile(r"[A-Za-z0-9_-]+")


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.n = len(text)

    # -- lexical helpers ----------------------------------------------------------------------

    def err(self, message: str, pos: int | None = None):
        return _error(message, self.text, self.pos if pos is None else pos)

    def skip_space(self) -> None:
        t = self.text
        while self.pos < self.n:
            c = t[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "#":
                nl = t.find("\n", self.pos)
                self.pos = self.n if nl < 0 else nl + 1
            else:
                break

    def at_rule_start(self) -> bool:
        """Whether the text at pos is `name ::=` (the start of the next rule)."""
        m = _NAME_CHARS.match(self.text, self.pos)
        if not m:
            return False
        p = m.end()
        while p < self.n and self.text[p] in " \t":
            p += 1
        return self.text.startswith("::=", p)

    def parse_char(self, in_class: bool, open_pos: int) -> str:
        """One (possibly escaped) character of a literal or class at pos; `open_pos` is where the
        literal/class began (for errors)."""
        t = self.text
        start = self.pos
        c = t[self.pos]
        if c == "\n":
            what = "character class" if in_class else "string literal"
            raise self.err(f"unterminated {what} (it may not span lines)", open_pos)
        if c != "\\":
            self.pos += 1
            return c
        if self.pos + 1 >= self.n:
            raise self.err("unterminated escape sequence")
        e = t[self.pos + 1]
        if e in _SIMPLE_ESCAPES:
            self.pos += 2
            return _SIMPLE_ESCAPES[e]
        if e in _HEX_LEN:
            k = _HEX_LEN[e]
            digits = t[self.pos + 2: self.pos + 2 + k]
            if len(digits) != k or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise self.err(f"bad \\{e} escape: expected {k} hex digits", start)
            cp = int(digits, 16)
            if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                raise self.err(f"escape \\{e}{digits} is not a valid Unicode scalar value", start)
            self.pos += 2 + k
            return chr(cp)
        raise self.err(f"unknown escape \\{e}", start)

    # -- grammar ------------------------------------------------------------------------------

    def parse_grammar(self):
        rules = []  # (name, name_pos, alternatives)
        self.skip_space()
        while self.pos < self.n:
            m = _NAME_CHARS.match(self.text, self.pos)
            if not m:
                raise self.err(f"expected a rule name, found {self.text[self.pos]!r}")
            name, name_pos = m.group(0), self.pos
            self.pos = m.end()
            while self.pos < self.n and self.text[self.pos] in " \t":
                self.pos += 1
            if not self.text.startswith("::=", self.pos):
                raise self.err(f"expected '::=' after rule name {name!r}")
            self.pos += 3
            self.skip_space()
            body = self.parse_alternates(nested=False)
            rules.append((name, name_pos, body))
            self.skip_space()
        return rules

    def parse_alternates(self, nested: bool):
        alts = [self.parse_sequence(nested)]
        while self.pos < self.n and self.text[self.pos] == "|":
            self.pos += 1
            self.skip_space()
            alts.append(self.parse_sequence(nested))
        return ("alt", alts)

    def parse_sequence(self, nested: bool):
        items = []
        t = self.text
        while True:
            self.skip_space()
            if self.pos >= self.n:
                break
            c = t[self.pos]
            start = self.pos
            if c == "|":
                break
            if c == ")":
                if not nested:
                    raise self.err("unbalanced ')'")
                break
            if not nested and self.at_rule_start():
                break
            if c == '"':
                self.pos += 1
                chars = []
                while True:
                    if self.pos >= self.n:
                        raise self.err("unterminated string literal", start)
                    if t[self.pos] == '"':
                        self.pos += 1
                        break
                    chars.append(self.parse_char(False, start))
                item = ("lit", "".join(chars))
            elif c == "[":
                item = self.parse_class()
            elif c == ".":
                self.pos += 1
                item = ("any",)
            elif c == "(":
                self.pos += 1
                self.skip_space()
                inner = self.parse_alternates(nested=True)
                self.skip_space()
                if self.pos >= self.n or t[self.pos] != ")":
                    raise self.err("expected ')' to close the group opened here", start)
                self.pos += 1
                item = ("group", inner)
            elif _NAME_CHARS.match(t, self.pos):
                m = _NAME_CHARS.match(t, self.pos)
                self.pos = m.end()
                item = ("ref", m.group(0), start)
            elif c in "*+?{":
                raise self.err(f"'{c}' must follow an element")
            else:
                hint = " (a rule is defined with '::=')" if c in "=:" else ""
                raise self.err(f"unexpected character {c!r}{hint}")
            item = self.parse_postfix(item)
            items.append(item)
        return ("seq", items)

    def parse_postfix(self, item):
        t = self.text
        while self.pos < self.n:
            # postfix operators may follow the element after spaces (not newlines)
            p = self.pos
            while p < self.n and t[p] in " \t":
                p += 1
            if p >= self.n or t[p] not in "*+?{":
                break
            self.pos = p
            op = t[p]
            if op in "*+?":
                self.pos += 1
                item = ("rep", item, {"*": 0, "+": 1, "?": 0}[op], {"*": None, "+": None, "?": 1}[op])
                continue
            start = self.pos
            close = t.find("}", self.pos)
            if close < 0:
                raise self.err("unterminated '{' repetition", start)
            body = t[self.pos + 1: close]
            m = re.fullmatch(r"\s*(\d*)\s*(?:(,)\s*(\d*)\s*)?", body)
            if not m or (m.group(1) == "" and not m.group(2)):
                raise self.err(f"bad repetition {{{body}}}: expected {{m}}, {{m,}}, {{m,n}} or {{,n}}", start)
            lo = int(m.group(1)) if m.group(1) else 0
            if m.group(2):
                hi = int(m.group(3)) if m.group(3) else None
            else:
                hi = lo
            if hi is not None and hi < lo:
                raise self.err(f"bad repetition {{{body}}}: maximum below minimum", start)
            if lo > _MAX_REPEAT or (hi is not None and hi > _MAX_REPEAT):
                raise self.err(f"repetition bound above {_MAX_REPEAT}", start)
            self.pos = close + 1
            item = ("rep", item, lo, hi)
        return item

    def parse_class(self):
        t = self.text
        start = self.pos
        self.pos += 1
        negate = False
        if self.pos < self.n and t[self.pos] == "^":
            negate = True
            self.pos += 1
        ranges = []
        while True:
            if self.pos >= self.n:
                raise self.err("unterminated character class", start)
            if t[self.pos] == "]":
                self.pos += 1
                break
            item_pos = self.pos
            lo = self.parse_char(True, start)
            hi = lo
            if (self.pos + 1 < self.n and t[self.pos] == "-" and t[self.pos + 1] != "]"):
                self.pos += 1
                hi = self.parse_char(True, start)
                if ord(hi) < ord(lo):
                    raise self.err(f"bad character range {lo!r}-{hi!r}", item_pos)
            ranges.append((ord(lo), ord(hi)))
        if not ranges and not negate:
            raise self.err("empty character class matches nothing", start)
        return ("class", negate, ranges, start)


# -- emission ---------------------------------------------------------------------------------


def _lark_string(s: str) -> str:
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\x%02x" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _class_char(cp: int) -> str:
    """A code point written inside a Lark /[...]/ regex literal (Lark turns \\xNN/\\uNNNN and
    \\n \\t \\r into the raw character; characters special in a class are backslash-escaped)."""
    c = chr(cp)
    if c in "\\]^-[/":
        return "\\" + c
    if c == "\n":
        return "\\n"
    if c == "\r":
        return "\\r"
    if c == "\t":
        return "\\t"
    if cp < 0x20 or cp == 0x7F:
        return "\\x%02x" % cp
    if 0x80 <= cp < 0xA0 or cp in (0x2028, 0x2029, 0x85):
        return "\\u%04x" % cp
    return c


def _lark_class(negate: bool, ranges) -> str:
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append(_class_char(lo))
        else:
            parts.append(_class_char(lo) + "-" + _class_char(hi))
    return "/[" + ("^" if negate else "") + "".join(parts) + "]/"


def _lark_names(rules, text: str) -> dict:
    mapping: dict[str, str] = {}
    used: set[str] = set()
    # `root` keeps its name; others are sanitized in order of appearance
    seen: list[str] = []
    for name, _pos, _body in rules:
        if name not in seen:
            seen.append(name)
    ordered = (["root"] if "root" in seen else []) + [n for n in seen if n != "root"]
    for name in ordered:
        base = name.lower().replace("-", "_")
        if not re.match(r"[a-z]", base):
            base = "g_" + base.lstrip("_")
            if base == "g_":
                base = "g_rule"
        cand = base
        k = 2
        while cand in used or cand == "gbnf_empty":
            cand = f"{base}_{k}"
            k += 1
        used.add(cand)
        mapping[name] = cand
    return mapping


def _emit(node, names, text: str, needs_empty: list) -> str:
    kind = node[0]
    if kind == "alt":
        alts = [_emit(a, names, text, needs_empty) for a in node[1]]
        return " | ".join(alts)
    if kind == "seq":
        parts = [_emit(i, names, text, needs_empty) for i in node[1]]
        parts = [p for p in parts if p]
        if not parts:
            needs_empty.append(True)
            return "gbnf_empty"
        return " ".join(parts)
    if kind == "lit":
        if node[1] == "":
            return ""
        return _lark_string(node[1])
    if kind == "class":
        _, negate, ranges, _pos = node
        if negate and not ranges:
            return "/(?s:.)/"
        return _lark_class(negate, ranges)
    if kind == "any":
        return "/(?s:.)/"
    if kind == "ref":
        _, name, pos = node
        if name not in names:
            raise _error(f"undefined rule {name!r}", text, pos)
        return names[name]
    if kind == "group":
        inner = _emit(node[1], names, text, needs_empty)
        return "(" + inner + ")"
    if kind == "rep":
        _, item, lo, hi = node
        inner = _emit(item, names, text, needs_empty)
        if not inner:
            return ""
        if item[0] not in ("group", "ref", "lit", "class", "any"):
            inner = "(" + inner + ")"
        if (lo, hi) == (0, None):
            return inner + "*"
        if (lo, hi) == (1, None):
            return inner + "+"
        if (lo, hi) == (0, 1):
            return inner + "?"
        if hi is None:
            return f"{inner} ~ {lo} {inner}*"
        if hi == 0:
            return ""
        if lo == hi:
            return f"{inner} ~ {lo}"
        if lo == 0:
            return f"({inner} ~ 1..{hi})?"
        return f"{inner} ~ {lo}..{hi}"
    raise AssertionError(kind)


def gbnf_to_lark(text: str) -> tuple[str, str]:
    """Translate llama.cpp GBNF `text` into (Lark grammar text, start rule name).

    Raises structgen.errors.GrammarError (with 1-based line/column in `text`) on syntax errors,
    undefined or duplicate rules, or a missing `root` rule.
    """
    parser = _Parser(text)
    rules = parser.parse_grammar()
    defined: dict[str, int] = {}
    for name, pos, _body in rules:
        if name in defined:
            raise _error(f"rule {name!r} defined twice", text, pos)
        defined[name] = pos
    if "root" not in defined:
        from ..errors import GrammarError

        raise GrammarError("GBNF: no 'root' rule (the start rule)", line=None, column=None)
    names = _lark_names(rules, text)
    needs_empty: list = []
    lines = ["// translated from GBNF by structgen.automata.gbnf"]
    for name, _pos, body in rules:
        rhs = _emit(body, names, text, needs_empty)
        lines.append(f"{names[name]}: {rhs}")
    if needs_empty:
        lines.append("gbnf_empty: ")
    return "\n".join(lines) + "\n", names["root"]
