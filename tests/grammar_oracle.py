"""An independent reference checker for Lark grammars (test helper, not a test module).

Semantics (Lark's ``lexer="dynamic_complete"``, stated exactly): a text is a sentence of G iff
it splits into non-empty lexemes w1..wn, each *fully* matching the Python ``re`` regex of some
terminal, where lexemes of ``%ignore``d terminals may appear anywhere (before, between, after)
and the sequence of the other lexemes' terminals is derived by the CFG from ``start``.

A byte string is a *viable prefix* iff some byte string extends it to (the UTF-8 encoding of) a
sentence. Prefixes ending inside a multi-byte UTF-8 character are handled exactly: the bytes so
far pin the next code point to a contiguous range, and the prefix is viable iff some code point
in that range continues a viable prefix.

Nothing here shares code with structgen's engine. Lark is used only to *load* the grammar
(`Lark(...).rules`, `.terminals`, `.ignore_tokens`); terminal regexes are parsed with the
standard library's own regex parser (`re._parser`) and compiled here to Thompson NFAs over code
points (character classes as interval sets computed from `re` itself, so Unicode classes and
case-insensitivity are exactly Python's), determinised lazily; the CFG part is a textbook
Earley recognizer (with the Aycock–Horspool nullable fix) run over character positions, where
scanning a terminal means "a lexeme of that terminal ends here" (the dynamic-lexer view).

Public API:
    viable_prefix(lark_text, start, prefix: bytes) -> bool
    viable_extensions(lark_text, start, prefix: bytes, candidates: list[bytes]) -> list[bool]
    is_sentence(lark_text, start, text: str | bytes) -> bool
    sample_prefixes(lark_text, start, sentences, rng, n) -> list[bytes]
"""
from __future__ import annotations

import bisect
import re
from functools import lru_cache

try:  # Python 3.11+
    from re import _constants as _C
    from re import _parser as _P
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _C  # type: ignore[no-redef]
    import sre_parse as _P  # type: ignore[no-redef]

__all__ = [
    "OracleError",
    "viable_prefix",
    "viable_extensions",
    "is_sentence",
    "sample_prefixes",
    "load",
]

MAXCODE = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)


class OracleError(ValueError):
    """A grammar/terminal the oracle cannot treat exactly (lookarounds, backreferences...)."""


# --------------------------------------------------------------------------------------------
# Interval sets of code points: sorted list of disjoint inclusive (lo, hi) pairs.
# --------------------------------------------------------------------------------------------


def _normalize(ivs):
    ivs = sorted(ivs)
    out = []
    for lo, hi in ivs:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _complement(ivs):
    out = []
    prev = 0
    for lo, hi in ivs:
        if lo > prev:
            out.append((prev, lo - 1))
        prev = hi + 1
    if prev <= MAXCODE:
        out.append((prev, MAXCODE))
    return out


def _remove_surrogates(ivs):
    """UTF-8 cannot encode surrogates, so no text contains them."""
    out = []
    a, b = _SURROGATES
    for lo, hi in ivs:
        if hi < a or lo > b:
            out.append((lo, hi))
            continue
        if lo < a:
            out.append((lo, a - 1))
        if hi > b:
            out.append((b + 1, hi))
    return out


@lru_cache(maxsize=1)
def _all_chars() -> str:
    return "".join(map(chr, range(MAXCODE + 1)))


@lru_cache(maxsize=None)
def _brute_force_class(class_regex: tuple) -> tuple:
    """Exact set of code points a one-character regex matches, by asking `re` about all of them."""
    flags, leaf = class_regex
    pat = re.compile("(?%s:%s)+" % (flags, leaf) if flags else "(?:%s)+" % leaf)
    return tuple((m.start(), m.end() - 1) for m in pat.finditer(_all_chars()))


_CATEGORY_TEXT = {
    _C.CATEGORY_DIGIT: r"\d",
    _C.CATEGORY_NOT_DIGIT: r"\D",
    _C.CATEGORY_SPACE: r"\s",
    _C.CATEGORY_NOT_SPACE: r"\S",
    _C.CATEGORY_WORD: r"\w",
    _C.CATEGORY_NOT_WORD: r"\W",
}


def _esc(c: int) -> str:
    return "\\U%08x" % c


def _flag_prefix(flags: int) -> str:
    s = ""
    if flags & re.IGNORECASE:
        s += "i"
    if flags & re.ASCII:
        s += "a"
    if flags & re.DOTALL:
        s += "s"
    return s


def _leaf_intervals(op, av, flags: int):
    """Code points matched by one single-character node of re's parse tree."""
    brute = bool(flags & (re.IGNORECASE | re.ASCII | getattr(re, "LOCALE", 0)))
    if op is _C.LITERAL:
        if not brute:
            return [(av, av)]
        return list(_brute_force_class((_flag_prefix(flags), _esc(av))))
    if op is _C.NOT_LITERAL:
        if not brute:
            return _complement([(av, av)])
        return list(_brute_force_class((_flag_prefix(flags), "[^" + _esc(av) + "]")))
    if op is _C.ANY:
        if flags & re.DOTALL:
            return [(0, MAXCODE)]
        return _complement([(10, 10)])
    if op is _C.IN:
        negate = False
        simple = []
        text = []
        for iop, iav in av:
            if iop is _C.NEGATE:
                negate = True
            elif iop is _C.LITERAL:
                simple.append((iav, iav))
                text.append(_esc(iav))
            elif iop is _C.RANGE:
                simple.append((iav[0], iav[1]))
                text.append(_esc(iav[0]) + "-" + _esc(iav[1]))
            elif iop is _C.CATEGORY:
                if iav not in _CATEGORY_TEXT:
                    raise OracleError(f"unsupported category {iav}")
                brute = True
                text.append(_CATEGORY_TEXT[iav])
            else:
                raise OracleError(f"unsupported class item {iop}")
        if not brute:
            ivs = _normalize(simple)
            return _complement(ivs) if negate else ivs
        cls = "[" + ("^" if negate else "") + "".join(text) + "]"
        return list(_brute_force_class((_flag_prefix(flags), cls)))
    raise AssertionError(op)


# --------------------------------------------------------------------------------------------
# Regex -> NFA over code points -> lazily determinised, trimmed DFA.
# --------------------------------------------------------------------------------------------


class _NFA:
    def __init__(self):
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple]] = []  # (intervals, target)

    def new(self) -> int:
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1


def _build(nfa: _NFA, seq, flags: int, start: int) -> int:
    """Add the NFA fragment for parsed sequence `seq` starting at `start`; return its end state."""
    cur = start
    for op, av in seq:
        if op in (_C.LITERAL, _C.NOT_LITERAL, _C.ANY, _C.IN):
            ivs = _remove_surrogates(_leaf_intervals(op, av, flags))
            nxt = nfa.new()
            if ivs:
                nfa.edges[cur].append((tuple(ivs), nxt))
            cur = nxt
        elif op is _C.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            cur = _build(nfa, sub, (flags | add_flags) & ~del_flags, cur)
        elif op is _C.BRANCH:
            _, alternatives = av
            end = nfa.new()
            for alt in alternatives:
                s = nfa.new()
                nfa.eps[cur].append(s)
                e = _build(nfa, alt, flags, s)
                nfa.eps[e].append(end)
            cur = end
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
            lo, hi, sub = av
            for _ in range(lo):
                cur = _build(nfa, sub, flags, cur)
            if hi == _C.MAXREPEAT:
                loop = nfa.new()
                nfa.eps[cur].append(loop)
                body_end = _build(nfa, sub, flags, loop)
                nfa.eps[body_end].append(loop)
                cur = loop
            else:
                end = nfa.new()
                for _ in range(hi - lo):
                    nfa.eps[cur].append(end)
                    cur = _build(nfa, sub, flags, cur)
                nfa.eps[cur].append(end)
                cur = end
        elif op is _C.AT:
            raise OracleError("anchors (^, $, \\b, \\A, \\Z...) are not supported")
        elif op in (_C.ASSERT, _C.ASSERT_NOT):
            raise OracleError("lookarounds are not supported")
        elif op in (_C.GROUPREF, _C.GROUPREF_EXISTS):
            raise OracleError("backreferences are not supported")
        else:  # ATOMIC_GROUP, POSSESSIVE_REPEAT, ...
            raise OracleError(f"unsupported regex construct {op}")
    return cur


class TermDFA:
    """Lazily built DFA for one terminal. States are ints; -1 is dead. State 0 is the start.

    The NFA is trimmed first, so every non-dead state can still reach acceptance.
    """

    def __init__(self, pattern: str):
        self.pattern = pattern
        try:
            parsed = _P.parse(pattern, 0)
        except re.error as e:
            raise OracleError(f"bad regex {pattern!r}: {e}") from e
        flags = parsed.state.flags
        nfa = _NFA()
        s0 = nfa.new()
        final = _build(nfa, parsed, flags, s0)
        n = len(nfa.eps)
        # trim: keep states that reach `final`
        rev: list[list[int]] = [[] for _ in range(n)]
        for s in range(n):
            for t in nfa.eps[s]:
                rev[t].append(s)
            for _ivs, t in nfa.edges[s]:
                rev[t].append(s)
        live = {final}
        stack = [final]
        while stack:
            t = stack.pop()
            for s in rev[t]:
                if s not in live:
                    live.add(s)
                    stack.append(s)
        self.eps = [[t for t in nfa.eps[s] if t in live] for s in range(n)]
        # per NFA state: flat sorted (lo, hi, target) list
        self.edges = [[(lo, hi, t) for ivs, t in nfa.edges[s] if t in live for lo, hi in ivs]
                      for s in range(n)]
        self.final = final
        self.empty_language = s0 not in live
        self._sets: list[frozenset] = []
        self._ids: dict[frozenset, int] = {}
        self.accepting: list[bool] = []
        self.trans: list[dict] = []
        self._range_cache: dict = {}
        self._lo_cache: list = []
        if not self.empty_language:
            self._intern(self._close({s0}))

    def _close(self, states) -> frozenset:
        stack = list(states)
        seen = set(states)
        while stack:
            s = stack.pop()
            for t in self.eps[s]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)

    def _intern(self, fs: frozenset) -> int:
        i = self._ids.get(fs)
        if i is None:
            i = len(self._sets)
            self._ids[fs] = i
            self._sets.append(fs)
            self.accepting.append(self.final in fs)
            self.trans.append({})
        return i

    def step(self, state: int, ch: str) -> int:
        t = self.trans[state]
        r = t.get(ch)
        if r is None:
            x = ord(ch)
            targets = set()
            for s in self._sets[state]:
                for lo, hi, tgt in self.edges[s]:
                    if lo <= x <= hi:
                        targets.add(tgt)
            r = self._intern(self._close(targets)) if targets else -1
            t[ch] = r
        return r

    def can_step_range(self, state: int, lo: int, hi: int) -> bool:
        key = (state, lo, hi)
        r = self._range_cache.get(key)
        if r is None:
            r = any(a <= hi and lo <= b for s in self._sets[state] for a, b, _t in self.edges[s])
            self._range_cache[key] = r
        return r

    def fullmatch(self, text: str) -> bool:
        if self.empty_language:
            return False
        s = 0
        for ch in text:
            s = self.step(s, ch)
            if s < 0:
                return False
        return self.accepting[s]


# --------------------------------------------------------------------------------------------
# The grammar: Lark-loaded rules + terminals, Earley over character positions.
# --------------------------------------------------------------------------------------------


class _Set:
    """One Earley set (after closure)."""

    __slots__ = ("items", "wait_nt", "wait_t", "_starts")

    def __init__(self, items, wait_nt, wait_t):
        self.items = items
        self.wait_nt = wait_nt
        self.wait_t = wait_t
        self._starts = None


_EMPTY = _Set(frozenset(), {}, {})


class OracleGrammar:
    def __init__(self, lark_text: str, start: str = "start"):
        import lark

        try:
            parser = lark.Lark(lark_text, parser="earley", lexer="dynamic_complete", start=start)
        except lark.exceptions.LarkError as e:  # pragma: no cover - grammar errors
            raise OracleError(f"lark could not load the grammar: {e}") from e
        term_defs = {t.name: t for t in parser.terminals}
        self.term_names: list[str] = []
        self.term_ids: dict[str, int] = {}
        self.dfas: list[TermDFA] = []

        def term_id(name: str) -> int:
            tid = self.term_ids.get(name)
            if tid is None:
                tid = len(self.term_names)
                self.term_ids[name] = tid
                self.term_names.append(name)
                td = term_defs.get(name)
                if td is None:  # %declare'd terminal: no lexeme can ever match it
                    self.dfas.append(TermDFA("[^\\x00-\\U0010ffff]"))
                else:
                    self.dfas.append(TermDFA(td.pattern.to_regexp()))
            return tid

        nt_ids: dict[str, int] = {}

        def nt_id(name: str) -> int:
            if name not in nt_ids:
                nt_ids[name] = len(nt_ids)
            return nt_ids[name]

        raw_rules = []
        for r in parser.rules:
            lhs = nt_id(r.origin.name)
            rhs = []
            for sym in r.expansion:
                if sym.is_term:
                    rhs.append(~term_id(sym.name))
                else:
                    rhs.append(nt_id(sym.name))
            raw_rules.append((lhs, tuple(rhs)))
        self.ignore = [term_id(name) for name in parser.ignore_tokens]
        self.ignore = [t for t in self.ignore if not self.dfas[t].empty_language]
        if start not in nt_ids:
            raise OracleError(f"no rule named {start!r}")
        self.start = nt_ids[start]
        # productive nonterminals (terminals are productive iff their language is non-empty)
        productive: set[int] = set()
        changed = True
        while changed:
            changed = False
            for lhs, rhs in raw_rules:
                if lhs in productive:
                    continue
                if all((s >= 0 and s in productive) or (s < 0 and not self.dfas[~s].empty_language)
                       for s in rhs):
                    productive.add(lhs)
                    changed = True
        rules = [(lhs, rhs) for lhs, rhs in raw_rules
                 if lhs in productive
                 and all((s >= 0 and s in productive) or (s < 0 and not self.dfas[~s].empty_language)
                         for s in rhs)]
        self.lhs = [l for l, _ in rules]
        self.rhs = [r for _, r in rules]
        self.by_lhs: dict[int, list[int]] = {}
        for i, l in enumerate(self.lhs):
            self.by_lhs.setdefault(l, []).append(i)
        nullable: set[int] = set()
        changed = True
        while changed:
            changed = False
            for l, r in rules:
                if l not in nullable and all(s >= 0 and s in nullable for s in r):
                    nullable.add(l)
                    changed = True
        self.nullable = nullable
        self.start_rules = [i for i in self.by_lhs.get(self.start, [])]
        self.set0 = self._closure(0, [(r, 0, 0) for r in self.start_rules], [])

    # -- Earley ---------------------------------------------------------------------------

    def _closure(self, j: int, kernel, sets) -> _Set:
        items = set()
        wait_nt: dict[int, list] = {}
        wait_t: dict[int, list] = {}
        agenda = list(kernel)
        rhs_of = self.rhs
        lhs_of = self.lhs
        by_lhs = self.by_lhs
        nullable = self.nullable
        while agenda:
            it = agenda.pop()
            if it in items:
                continue
            items.add(it)
            r, d, o = it
            rhs = rhs_of[r]
            if d == len(rhs):
                a = lhs_of[r]
                src = wait_nt.get(a, ()) if o == j else sets[o].wait_nt.get(a, ())
                for r2, d2, o2 in src:
                    agenda.append((r2, d2 + 1, o2))
            else:
                s = rhs[d]
                if s >= 0:
                    lst = wait_nt.get(s)
                    if lst is None:
                        wait_nt[s] = [it]
                        for r2 in by_lhs.get(s, ()):
                            agenda.append((r2, 0, j))
                    else:
                        lst.append(it)
                    if s in nullable:
                        agenda.append((r, d + 1, o))
                else:
                    wait_t.setdefault(~s, []).append(it)
        if not items:
            return _EMPTY
        return _Set(frozenset(items), wait_nt, wait_t)

    def _starts(self, j: int, E: _Set):
        """Threads (origin, key, dfa_state) for lexemes that may start at position j.
        key >= 0: terminal scanned by the CFG; key < 0: ~key is an %ignore'd terminal."""
        st = E._starts
        if st is None:
            st = []
            if E.items:
                for tid in E.wait_t:
                    st.append((j, tid, 0))
                for tid in self.ignore:
                    st.append((j, ~tid, 0))
            E._starts = st
        return st

    def step(self, sets: list, threads: list, ch: str):
        """Advance by one character from position j = len(sets) - 1. Returns (E_{j+1}, threads)."""
        j = len(sets) - 1
        new_threads = []
        kernel = []
        dfas = self.dfas
        for group in (threads, self._starts(j, sets[j])):
            for i, key, ds in group:
                dfa = dfas[key if key >= 0 else ~key]
                ds2 = dfa.step(ds, ch)
                if ds2 < 0:
                    continue
                new_threads.append((i, key, ds2))
                if dfa.accepting[ds2]:
                    if key >= 0:
                        kernel.extend((r, d + 1, o) for r, d, o in sets[i].wait_t[key])
                    else:
                        kernel.extend(sets[i].items)
        E = self._closure(j + 1, kernel, sets) if kernel else _EMPTY
        return E, new_threads

    def run(self, text: str):
        sets = [self.set0]
        threads: list = []
        for ch in text:
            E, threads = self.step(sets, threads, ch)
            sets.append(E)
            if not E.items and not threads:
                return sets, threads, False
        return sets, threads, True

    def alive(self, sets, threads) -> bool:
        return bool(sets[-1].items) or bool(threads)

    def alive_with_partial_char(self, sets, threads, lo: int, hi: int) -> bool:
        j = len(sets) - 1
        for group in (threads, self._starts(j, sets[j])):
            for _i, key, ds in group:
                dfa = self.dfas[key if key >= 0 else ~key]
                if dfa.can_step_range(ds, lo, hi):
                    return True
        return False

    def accepts(self, sets) -> bool:
        n = len(sets) - 1
        return any(o == 0 and self.lhs[r] == self.start and d == len(self.rhs[r])
                   for r, d, o in sets[n].items)


@lru_cache(maxsize=64)
def load(lark_text: str, start: str = "start") -> OracleGrammar:
    """The compiled oracle for a grammar (cached; DFA transitions accumulate across calls)."""
    return OracleGrammar(lark_text, start)


# --------------------------------------------------------------------------------------------
# UTF-8 handling
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _partial_range(partial: bytes):
    """Code point range (lo, hi) of the characters whose UTF-8 encoding starts with `partial`
    (1-3 bytes, an incomplete character), or None if no character does."""
    b0 = partial[0]
    if 0xC2 <= b0 <= 0xDF:
        total = 2
    elif 0xE0 <= b0 <= 0xEF:
        total = 3
    elif 0xF0 <= b0 <= 0xF4:
        total = 4
    else:
        return None
    if len(partial) >= total:
        return None
    missing = total - len(partial)
    found = []
    for b in range(0x80, 0xC0):
        for fill in (0x80, 0xBF):
            cand = partial + bytes([b]) + bytes([fill]) * (missing - 1)
            try:
                found.append(ord(cand.decode("utf-8")))
            except UnicodeDecodeError:
                pass
    if not found:
        return None
    return (min(found), max(found))


def _split_utf8(data: bytes):
    """(decoded complete text, code point range of a trailing incomplete char or None);
    raises ValueError if `data` is not a prefix of valid UTF-8."""
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    for k in (1, 2, 3):
        if len(data) < k:
            break
        head, tail = data[:-k], data[-k:]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            continue
        rng = _partial_range(tail)
        if rng is not None:
            return text, rng
    raise ValueError("not a prefix of valid UTF-8")


def _split_partial_tail(data: bytes):
    """Split `data` into (head that ends on a char boundary, 0-3 trailing bytes of an
    incomplete char). Only looks at the structure of the last bytes."""
    n = len(data)
    for k in (1, 2, 3):
        if n - k < 0:
            break
        b = data[n - k]
        if b & 0xC0 == 0x80:
            continue  # continuation byte, look further back
        if b >= 0xC0:
            total = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            if k < total:
                return data[: n - k], data[n - k:]
        break
    return data, b""


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def is_sentence(lark_text: str, start: str, text) -> bool:
    """Whether `text` (str, or bytes that must be valid UTF-8) is a sentence of the grammar."""
    g = load(lark_text, start)
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            return False
    sets, _threads, ok = g.run(text)
    return ok and g.accepts(sets)


def viable_prefix(lark_text: str, start: str, prefix: bytes) -> bool:
    """Whether some byte string extends `prefix` to a sentence of the grammar."""
    g = load(lark_text, start)
    try:
        text, rng = _split_utf8(bytes(prefix))
    except ValueError:
        return False
    sets, threads, ok = g.run(text)
    if not ok:
        return False
    if rng is None:
        return g.alive(sets, threads)
    return g.alive_with_partial_char(sets, threads, rng[0], rng[1])


def viable_extensions(lark_text: str, start: str, prefix: bytes, candidates) -> list:
    """[viable_prefix(prefix + c) for c in candidates], sharing the work: the prefix is parsed
    once, then the candidates are walked in sorted order as a trie (common prefixes stepped
    once; a dead node kills everything below it)."""
    g = load(lark_text, start)
    prefix = bytes(prefix)
    head, pend = _split_partial_tail(prefix)
    result = [False] * len(candidates)
    try:
        head_text = head.decode("utf-8")
    except UnicodeDecodeError:
        return result
    base_sets, base_threads, ok = g.run(head_text)
    if not ok:
        return result
    decoded = []
    for idx, c in enumerate(candidates):
        try:
            text, rng = _split_utf8(pend + bytes(c))
        except ValueError:
            continue
        decoded.append((text, rng, idx))
    decoded.sort(key=lambda x: x[0])
    sets = list(base_sets)
    base_len = len(base_sets)
    # stack[k] = threads after k characters of the current candidate text
    thread_stack = [base_threads]
    cur = ""  # the candidate text the stacks currently describe (len(thread_stack) - 1 chars)
    dead_at = None  # if set: the node at this depth of `cur` is dead, and so is all below it
    for text, rng, idx in decoded:
        m = 0
        lim = min(len(cur), len(text))
        while m < lim and cur[m] == text[m]:
            m += 1
        if dead_at is not None:
            if m >= dead_at:
                continue
            dead_at = None
        del sets[base_len + m:]
        del thread_stack[m + 1:]
        for k in range(m, len(text)):
            E, th = g.step(sets, thread_stack[-1], text[k])
            sets.append(E)
            thread_stack.append(th)
            if not E.items and not th:
                dead_at = k + 1
                break
        cur = text[: len(thread_stack) - 1]
        if dead_at is not None:
            continue
        if rng is None:
            result[idx] = g.alive(sets, thread_stack[-1])
        else:
            result[idx] = g.alive_with_partial_char(sets, thread_stack[-1], rng[0], rng[1])
    return result


def sample_prefixes(lark_text: str, start: str, sentences, rng, n: int) -> list:
    """`n` random byte prefixes (cut at random byte positions, possibly mid-character, possibly
    empty or complete) of the given valid sentences. `rng` is a `random.Random`."""
    encoded = [s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in sentences]
    for s in encoded:
        if not is_sentence(lark_text, start, s):
            raise ValueError(f"not a sentence of the grammar: {s!r}")
    out = []
    for _ in range(n):
        s = rng.choice(encoded)
        out.append(s[: rng.randint(0, len(s))])
    return out
