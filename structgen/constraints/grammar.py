"""`Grammar`: context-free constraints (Lark grammars, GBNF) as lazily built byte automata.

A grammar state is a set of (parser state, lexer position) pairs. Reading a byte either
continues the current lexeme (the lexer's business: rows depend only on the lexer position and
are shared by every parser state) or ends it and starts the next one (the parser's business:
scan the finished terminal, then lex from the terminals it expects). Pairs are interned into
integers with a 256-entry transition row each, built the first time a mask walk or a token
reaches them — so the trie walk of `TokenTrie` works unchanged, and tokens spanning several
lexemes ask the parser only at the few trie nodes where a lexeme can end.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..automata.completion import ParserCompletions, dfa_completion, dfa_shortest_match
from ..automata.earley import EarleyParser, ParserState
from ..automata.grammar import CompiledGrammar, compile_lark
from ..vocab.token_bytes import Vocabulary
from ..vocab.trie import trie_for
from .base import Constraint, State, TokenAutomaton

DEAD = 0  # grammar state 0 is the sink: no continuation
BOUNDARY = -1  # lexer position "between lexemes, nothing read yet" (only at the very start)


class _Lexer:
    """Sets of (terminal, DFA state) read so far in the current lexeme, interned as ints."""

    def __init__(self, grammar: CompiledGrammar) -> None:
        self.dfas = grammar.terminal_dfas
        self.ignore = grammar.ignore
        self._ids: dict[frozenset, int] = {}
        self.sets: list[frozenset] = []
        self.rows: list[np.ndarray | None] = []
        self.accepts: list[tuple[int, ...]] = []
        self._starts: dict[ParserState, int] = {}

    def intern(self, pairs: frozenset) -> int:
        k = self._ids.get(pairs)
        if k is None:
            k = self._ids[pairs] = len(self.sets)
            self.sets.append(pairs)
            self.rows.append(None)
            self.accepts.append(tuple(sorted(t for t, s in pairs if self.dfas[t].accepting[s])))
        return k

    def start(self, parser_state: ParserState) -> int:
        """Lexer position at the start of a lexeme, given what the parser expects."""
        k = self._starts.get(parser_state)
        if k is None:
            terminals = parser_state.expected | self.ignore
            k = self._starts[parser_state] = self.intern(
                frozenset((t, self.dfas[t].initial) for t in terminals)
            )
        return k

    def row(self, k: int) -> np.ndarray:
        """Next lexer position for each byte (-1 = no terminal can continue)."""
        row = self.rows[k]
        if row is None:
            nexts: dict[int, set] = {}
            for t, s in self.sets[k]:
                trans = self.dfas[t].transitions[s]
                for b in np.flatnonzero(trans >= 0).tolist():
                    nexts.setdefault(b, set()).add((t, int(trans[b])))
            row = np.full(256, -1, np.int64)
            for b, pairs in nexts.items():
                row[b] = self.intern(frozenset(pairs))
            self.rows[k] = row
        return row


class GrammarAutomaton(TokenAutomaton):
    """Token automaton of a compiled grammar; states are interned ints (0 = dead)."""

    def __init__(self, grammar: CompiledGrammar, vocab: Vocabulary) -> None:
        super().__init__(vocab)
        self.grammar = grammar
        self.parser = EarleyParser(grammar.cfg)
        self.lexer = _Lexer(grammar)
        self.trie = trie_for(vocab)
        self._ids: dict[frozenset, int] = {}
        self._pairs: list[frozenset] = [frozenset()]
        self._rows: list[list[int] | None] = [[DEAD] * 256]
        self._accepting: list[bool | None] = [False]
        self._table = np.zeros(256 * 64, np.int64)
        self._have = np.zeros(64, bool)
        self._have[DEAD] = True
        self._start = self._intern(frozenset({(self.parser.initial, BOUNDARY)}))
        self.completions = ParserCompletions(
            grammar.cfg, [dfa_shortest_match(d) for d in grammar.terminal_dfas], self.parser.initial
        )

    # -- interning and rows ------------------------------------------------------------

    def _intern(self, pairs: frozenset) -> int:
        k = self._ids.get(pairs)
        if k is None:
            if not pairs:
                return DEAD
            k = self._ids[pairs] = len(self._pairs)
            self._pairs.append(pairs)
            self._rows.append(None)
            self._accepting.append(None)
            if k >= len(self._have):
                self._have = np.concatenate([self._have, np.zeros(len(self._have), bool)])
                self._table = np.concatenate([self._table, np.zeros(len(self._table), np.int64)])
        return k

    def _successors(self, parser_state: ParserState, lex: int) -> Iterable[tuple[ParserState, np.ndarray]]:
        """(parser state, lexer row) alternatives for the next byte from one pair."""
        if lex == BOUNDARY:
            yield parser_state, self.lexer.row(self.lexer.start(parser_state))
            return
        yield parser_state, self.lexer.row(lex)
        for t in self.lexer.accepts[lex]:  # the lexeme may end here: next byte starts another
            for after in self._after(parser_state, t):
                yield after, self.lexer.row(self.lexer.start(after))

    def _after(self, parser_state: ParserState, terminal: int) -> list[ParserState]:
        """Parser states after finishing a lexeme of `terminal` (ignored ones change nothing)."""
        out = []
        if terminal in self.grammar.ignore:
            out.append(parser_state)
        if terminal in parser_state.expected:
            nxt = parser_state.scan(terminal)
            if nxt is not None:
                out.append(nxt)
        return out

    def _row(self, k: int) -> list[int]:
        row = self._rows[k]
        if row is None:
            alternatives = [alt for ps, lex in self._pairs[k] for alt in self._successors(ps, lex)]
            # One column per byte: which lexer position each alternative reaches. Bytes with
            # equal columns lead to the same state, so only distinct columns are interned.
            parser_states = [ps for ps, _ in alternatives]
            matrix = np.stack([lrow for _, lrow in alternatives])
            columns, inverse = np.unique(matrix, axis=1, return_inverse=True)
            ids = np.zeros(columns.shape[1], np.int64)
            for c in range(columns.shape[1]):
                col = columns[:, c].tolist()
                ids[c] = self._intern(
                    frozenset((ps, lex) for ps, lex in zip(parser_states, col) if lex >= 0)
                )
            row = ids[inverse.reshape(-1)].tolist()
            self._rows[k] = row
            self._table[k * 256 : (k + 1) * 256] = row
            self._have[k] = True
        return row

    sink = DEAD

    def table_for(self, states: np.ndarray) -> np.ndarray:
        """The flat transition table, with rows built for every state in `states`."""
        missing = states[~self._have[states]]
        if len(missing):
            for k in np.unique(missing).tolist():
                self._row(k)
        return self._table

    # -- TokenAutomaton ----------------------------------------------------------------

    @property
    def start(self) -> int:
        return self._start

    def is_accepting(self, state: State) -> bool:
        acc = self._accepting[state]
        if acc is None:
            acc = False
            for parser_state, lex in self._pairs[state]:
                if lex == BOUNDARY:
                    acc = acc or parser_state.accepting
                    continue
                for t in self.lexer.accepts[lex]:
                    acc = acc or any(ps.accepting for ps in self._after(parser_state, t))
            self._accepting[state] = acc
        return acc

    def _content_ids(self, state: State) -> np.ndarray:
        ids, _ = self.trie.walk(self, state)
        return ids

    def _advance_bytes(self, state: State, data: bytes) -> int | None:
        for b in data:
            state = self._row(state)[b]
            if state == DEAD:
                return None
        return state

    def forced_bytes(self, state: State) -> bytes:
        out = bytearray()
        while len(out) < 256 and not self.is_accepting(state):
            row = self._row(state)
            live = [b for b in range(256) if row[b] != DEAD]
            if len(live) != 1:
                break
            out.append(live[0])
            state = row[live[0]]
        return bytes(out)


    def completion_bytes(self, state: State) -> bytes | None:
        best = None
        for parser_state, lex in self._pairs[state]:
            if lex == BOUNDARY:
                candidates = [self.completions.complete(parser_state)]
            else:
                candidates = [
                    dfa_completion(self.grammar.terminal_dfas[t], s) + tail
                    for t, s in self.lexer.sets[lex]
                    for after in self._after(parser_state, t)
                    for tail in (self.completions.complete(after),)
                    if tail is not None
                ]
            for text in candidates:
                if text is not None and (best is None or len(text) < len(best)):
                    best = text
        return best


class Grammar(Constraint):
    """Text in the language of a Lark grammar (`start` names the start rule).

    Accepts Lark's grammar language; grammars Lark rejects raise GrammarError with Lark's
    line/column, and terminals structgen cannot enforce exactly (lookarounds, terminals
    declared for a post-lexer) are refused, never approximated.
    """

    def __init__(self, text: str, start: str = "start") -> None:
        super().__init__()
        self.text = text
        self.start = start
        self.compiled = compile_lark(text, start)

    @classmethod
    def from_gbnf(cls, text: str) -> "Grammar":
        """Import a llama.cpp GBNF grammar (start rule `root`)."""
        from ..automata.gbnf import gbnf_to_lark

        lark_text, start = gbnf_to_lark(text)
        return cls(lark_text, start)

    def __repr__(self) -> str:
        return f"Grammar(<{len(self.compiled.cfg.rules)} rules>, start={self.start!r})"

    def _build(self, vocab: Vocabulary) -> GrammarAutomaton:
        return GrammarAutomaton(self.compiled, vocab)
