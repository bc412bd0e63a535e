"""Regular expressions → trimmed byte DFAs (via a character DFA over interegular's parse)."""
from __future__ import annotations

from functools import lru_cache

import interegular
from interegular.fsm import anything_else

from ..errors import RegexError, UnsupportedRegexError
from .bytedfa import ByteDFA, complement_ranges, from_char_dfa, ranges_of
from .positions import to_fsm
from .regex_syntax import to_interegular


@lru_cache(maxsize=256)
def regex_to_dfa(pattern: str) -> ByteDFA:
    """Compile a Python-syntax regex (full-match semantics) to a trimmed byte DFA.

    Raises RegexSyntaxError / UnsupportedRegexError naming the position, or RegexError when
    the pattern matches no string at all (a constraint nothing can satisfy).
    """
    rewritten = to_interegular(pattern)
    try:
        fsm = to_fsm(interegular.parse_pattern(rewritten))
    except interegular.Unsupported as e:
        raise UnsupportedRegexError(str(e), pattern) from None
    except Exception as e:  # interegular's parser errors have no stable type
        raise UnsupportedRegexError(f"{type(e).__name__}: {e}", pattern) from None

    by_symbol: dict[int, list[int]] = {}
    explicit: list[int] = []
    other_symbol = None
    for char, symbol in fsm.alphabet._symbol_mapping.items():
        if char is anything_else:
            other_symbol = symbol
        elif len(char) != 1:
            continue  # not a character (e.g. a multi-character case mapping): never matches one
        else:
            by_symbol.setdefault(symbol, []).append(ord(char))
            explicit.append(ord(char))
    symbol_ranges = {sym: ranges_of(cps) for sym, cps in by_symbol.items()}
    if other_symbol is not None:
        symbol_ranges[other_symbol] = complement_ranges(ranges_of(explicit))

    index = {s: i for i, s in enumerate(sorted(fsm.states))}
    edges = {
        index[s]: [(symbol_ranges.get(sym, []), index[t]) for sym, t in fsm.map.get(s, {}).items()]
        for s in fsm.states
    }
    dfa = from_char_dfa(len(index), index[fsm.initial], [index[s] for s in fsm.finals], edges)
    if dfa.is_empty():
        raise RegexError("pattern matches no string", pattern)
    return dfa
