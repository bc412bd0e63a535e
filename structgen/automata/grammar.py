"""Lark grammar text → a context-free grammar over terminals whose lexemes are byte DFAs.

Lark itself parses the grammar language (so `?`, `*`, `+`, `~n..m`, templates, `%import` and
`%ignore` mean exactly what they mean in Lark) and expands it to plain rules. We keep Lark's
language and drop its tree shaping. The language of a grammar is: texts that split into lexemes,
each fully matching its terminal, with %ignore'd lexemes anywhere between them, whose terminal
sequence the rules derive (Lark's `dynamic_complete` Earley semantics).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import lark
import numpy as np
from lark.lexer import PatternRE, PatternStr

from ..errors import GrammarError, RegexError
from .bytedfa import ByteDFA
from .earley import CFG, derived
from .regex import regex_to_dfa

# Lark's common terminals that use lookbehinds, replaced by equivalent lookaround-free regexes.
_COMMON_REWRITES = {
    # ".*?(?<!\\)(\\\\)*?" — a quoted string without newlines whose closing quote is unescaped
    r'".*?(?<!\\)(\\\\)*?"': r'"(?:[^"\\\n]|\\[^\n])*"',
}
_FLAG_LETTERS = {"i", "s", "m", "x", "u", "l"}


@dataclass(frozen=True, eq=False)
class CompiledGrammar:
    """A CFG plus one byte DFA per terminal; `ignore` terminals may appear between lexemes.
    `free_lexer`: whether masks on large vocabularies prune leaving tokens with the grammar's
    free lexer (`structgen.constraints.grammar._FreeLexer`), which pays where lexemes touch."""

    cfg: CFG
    terminal_dfas: tuple[ByteDFA, ...]
    ignore: frozenset[int]
    free_lexer: bool = True


def _terminal_regex(term: lark.lexer.TerminalDef) -> str:
    pattern = term.pattern
    flags = "".join(sorted(f for f in pattern.flags if f in _FLAG_LETTERS))
    if isinstance(pattern, PatternStr):
        body = re.escape(pattern.value)
    elif isinstance(pattern, PatternRE):
        body = _COMMON_REWRITES.get(pattern.value, pattern.value)
    else:  # pragma: no cover - lark has only these two
        raise GrammarError(f"terminal {term.name}: unknown pattern type {type(pattern).__name__}")
    return f"(?{flags}:{body})" if flags else body


def compile_lark(text: str, start: str = "start") -> CompiledGrammar:
    """Compile Lark grammar text; errors carry Lark's line/column or name the terminal."""
    try:
        parser = lark.Lark(text, start=start, parser="earley", lexer="dynamic")
    except lark.exceptions.UnexpectedInput as e:
        raise GrammarError(f"invalid grammar: {e}", getattr(e, "line", None),
                           getattr(e, "column", None)) from None
    except Exception as e:  # GrammarError, ConfigurationError, re.error, a missing %import...
        line = re.search(r"[Ll]ine (\d+)", str(e))
        column = re.search(r"col(?:umn)? (\d+)", str(e))
        raise GrammarError(f"invalid grammar: {type(e).__name__}: {e}",
                           int(line.group(1)) if line else None,
                           int(column.group(1)) if column else None) from None

    terminals = {t.name: t for t in parser.terminals}
    used = {s.name for r in parser.rules for s in r.expansion if s.is_term}
    missing = sorted(used - set(terminals))
    if missing:
        raise GrammarError(
            f"terminal(s) {', '.join(missing)} have no definition (declared for a post-lexer such "
            "as an indenter?): structgen cannot enforce them"
        )
    names = sorted(used | set(parser.ignore_tokens))
    t_index = {n: i for i, n in enumerate(names)}
    dfas = []
    for name in names:
        regex = _terminal_regex(terminals[name])
        try:
            dfa = regex_to_dfa(regex)
        except RegexError as e:
            raise GrammarError(f"terminal {name}: {e}") from None
        if dfa.accepting[dfa.initial]:
            raise GrammarError(f"terminal {name} matches the empty string")
        dfas.append(dfa)

    nt_names = sorted({r.origin.name for r in parser.rules})
    nt_index = {n: len(names) + i for i, n in enumerate(nt_names)}
    rules = []
    for r in parser.rules:
        rhs = []
        for s in r.expansion:
            rhs.append(t_index[s.name] if s.is_term else nt_index.get(s.name, -1))
        if -1 not in rhs:  # a nonterminal with no rules at all is unproductive
            rules.append((nt_index[r.origin.name], tuple(rhs)))
    rules = _productive_rules(rules, len(names))
    start_sym = nt_index[start]
    if not any(lhs == start_sym for lhs, _ in rules):
        raise GrammarError(f"start rule {start!r} derives no finite text")
    cfg = CFG(len(names), tuple(rules), start_sym, tuple(names), tuple(nt_names))
    ignore = frozenset(t_index[n] for n in parser.ignore_tokens)
    return CompiledGrammar(cfg, tuple(dfas), ignore)


def _productive_rules(rules: list[tuple[int, tuple[int, ...]]], n_terminals: int):
    """Keep rules whose every symbol derives some terminal string."""
    productive = derived(rules, lambda s: s < n_terminals)
    return [(lhs, rhs) for lhs, rhs in rules
            if lhs in productive and all(s < n_terminals or s in productive for s in rhs)]


def follow_bytes(grammar: CompiledGrammar) -> list[int]:
    """Per terminal t, the bytes that may start a lexeme right after one of t (a 256-bit int,
    bit b for byte b): first bytes of the terminals that may follow t in some derivation
    (FOLLOW sets over terminals), and of the ignored ones, which may follow any lexeme
    (anything may follow those). A superset of what any text of the language does: masks
    use it to rule out tokens that would end a lexeme and start one that cannot come next
    (two whitespace runs in a row, where a schema bounds each run).

    Flows of bit sets along edges, each pushed again only when it grew: schema grammars have
    up to ~14k rules (~1 ms on MaskBench's p90 grammar)."""
    cfg, dfas = grammar.cfg, grammar.terminal_dfas
    nt0 = cfg.n_terminals
    n = nt0 + len(cfg.nonterminal_names)
    nullable = cfg.nullable
    first = [0] * n
    for t, dfa in enumerate(dfas):
        row = dfa.transitions[dfa.initial] >= 0
        first[t] = int.from_bytes(np.packbits(row, bitorder="little").tobytes(), "little")
    begins: list[list[int]] = [[] for _ in range(n)]  # FIRST(lhs) ⊇ FIRST(s)
    ends: list[list[int]] = [[] for _ in range(n)]  # FOLLOW(s) ⊇ FOLLOW(lhs)
    before: list[list[int]] = [[] for _ in range(n)]  # FOLLOW(x) ⊇ FIRST(y), x listed under y
    for lhs, rhs in cfg.rules:
        for s in rhs:
            begins[s].append(lhs)
            if s not in nullable:
                break
        for i, x in enumerate(rhs):
            for y in rhs[i + 1:]:
                before[y].append(x)
                if y not in nullable:
                    break
            else:
                ends[lhs].append(x)
    _flow(first, begins, range(nt0))
    follow = [0] * n
    for y, xs in enumerate(before):
        if first[y]:
            for x in xs:
                follow[x] |= first[y]
    _flow(follow, ends, [s for s in range(n) if follow[s]])
    after_ignored = 0
    for i in grammar.ignore:
        after_ignored |= first[i]
    anything = 0
    for t in range(nt0):
        anything |= first[t]
    return [anything if t in grammar.ignore else follow[t] | after_ignored for t in range(nt0)]


def _flow(sets: list[int], edges: list[list[int]], sources) -> None:
    """sets[d] |= sets[s] along every edge s -> d, to the fixpoint."""
    todo = list(sources)
    while todo:
        s = todo.pop()
        v = sets[s]
        for d in edges[s]:
            grown = sets[d] | v
            if grown != sets[d]:
                sets[d] = grown
                todo.append(d)
