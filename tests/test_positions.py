"""The position construction (`structgen.automata.positions.to_fsm`) against interegular's own
`Pattern.to_fsm`: the same language for every pattern structgen hands it — random regexes
after `to_interegular`, the shipped grammars' terminals, the formats, ECMA-style searches as
`pattern_fsm` builds them."""
from __future__ import annotations

from pathlib import Path

import interegular
import lark
import pytest
from hypothesis import given
from test_regex import SETTINGS, regexes

from structgen.automata.grammar import _terminal_regex
from structgen.automata.positions import to_fsm
from structgen.automata.regex_syntax import to_interegular
from structgen.errors import RegexError
from structgen.schema.formats import COMPACT, FORMATS

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def _same_language(text: str) -> None:
    parsed = interegular.parse_pattern(text)
    theirs, ours = parsed.to_fsm(), to_fsm(parsed)
    assert ours.equivalent(theirs), text


@SETTINGS
@given(regexes())
def test_random_regexes(rx):
    pattern, _ = rx
    try:
        text = to_interegular(pattern)
    except RegexError:
        return  # refused before any DFA is built
    _same_language(text)


def _grammar_terminals() -> list[str]:
    out = []
    for path in sorted(GRAMMARS.glob("*.lark")):
        parser = lark.Lark(path.read_text(), parser="earley", lexer="dynamic")
        out += [_terminal_regex(t) for t in parser.terminals]
    return out


@pytest.mark.parametrize("regex", _grammar_terminals())
def test_shipped_grammar_terminals(regex):
    _same_language(to_interegular(regex))


@pytest.mark.parametrize("name", sorted(set(FORMATS) - {"regex"}))
def test_formats(name):
    _same_language(to_interegular(FORMATS[name][0]))
    if name in COMPACT:
        _same_language(to_interegular(COMPACT[name]))


@pytest.mark.parametrize("text", [
    "(?s:.)*(?:foo|ba+r)(?s:.)*",      # an unanchored search, as pattern_fsm builds them
    "(?:a|(?s:.)*b)(?s:.)*",
    "(?s:a.b)|a.b",                     # `.` with and without the s flag in one pattern
    "x{0,3}y?|(|a)b{2,}|(?:a{2}){1,3}",  # bounded and empty repeats, empty options
    "[^a-c]*[^\\n]+",                   # negated classes: the rest of the alphabet
    "(?:a|[^a])*",
    "(?:a|[\ud800])b",                  # a class of one lone surrogate (regex_syntax's "nothing")
])
def test_edge_cases(text):
    _same_language(text)

