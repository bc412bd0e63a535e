"""`Regex`: full-match regular expression constraints."""
from __future__ import annotations

import numpy as np

from ..automata.bytedfa import DEAD, ByteDFA
from ..automata.regex import regex_to_dfa
from ..vocab.token_bytes import Vocabulary
from ..vocab.trie import trie_for
from .base import Constraint, State, TokenAutomaton


class DFAAutomaton(TokenAutomaton):
    """Token automaton of a byte DFA: states are DFA state numbers."""

    def __init__(self, dfa: ByteDFA, vocab: Vocabulary) -> None:
        super().__init__(vocab)
        self.dfa = dfa
        self.trie = trie_for(vocab)
        # Flattened transitions with an extra sink state standing for "dead" (see TokenTrie.walk).
        self.sink = dfa.n_states
        table = np.where(dfa.transitions >= 0, dfa.transitions, self.sink)
        self._table = np.concatenate([table, np.full((1, 256), self.sink)]).astype(np.int64).ravel()

    @property
    def start(self) -> int:
        return self.dfa.initial

    def is_accepting(self, state: State) -> bool:
        return bool(self.dfa.accepting[state])

    def _content_ids(self, state: State) -> np.ndarray:
        ids, _ = self.trie.walk(self, state)
        return ids

    def table_for(self, states: np.ndarray) -> np.ndarray:
        return self._table

    def _advance_bytes(self, state: State, data: bytes) -> int | None:
        nxt = self.dfa.walk(state, data)
        return None if nxt == DEAD else nxt

    def forced_bytes(self, state: State) -> bytes:
        return self.dfa.forced_bytes(state)


class Regex(Constraint):
    """Text that `re.fullmatch(pattern, text)` accepts.

    Python regex syntax. Constructs no finite automaton can enforce (backreferences,
    lookarounds, word boundaries, anchors in the middle) raise UnsupportedRegexError with
    their position; `\\d \\w \\s` match ASCII members only (a narrowing, never a widening).
    """

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern
        self.dfa = regex_to_dfa(pattern)

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"

    def _build(self, vocab: Vocabulary) -> DFAAutomaton:
        return DFAAutomaton(self.dfa, vocab)
