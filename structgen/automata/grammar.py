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
