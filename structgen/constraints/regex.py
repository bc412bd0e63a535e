"""`Regex`: full-match regular expression constraints."""
from __future__ import annotations

import numpy as np

from ..automata.bytedfa import DEAD, ByteDFA
from ..automata.completion import dfa_completion
from ..automata.regex import regex_to_dfa
from ..vocab.token_bytes import Vocabulary
from ..vocab.trie import trie_for
from .base import Constraint, State, TokenAutomaton


class DFAAutomaton(TokenAutomaton):
    """Token automaton of a byte DFA: states are DFA state numbers.

    The allowed tokens of the DFA states are precomputed on the first mask request
    (`_precompute`): one batched multi-source trie walk (`TokenTrie.walk_many`) for every state
    whose tokens are a small part of the trie, then single-state walks (`TokenTrie.walk`, dense
    mode) for up to `max_dense_states` of the others, nearest the start state first. States
    left over — DFAs with many large-set states — are walked lazily on their first mask.
    """

    #: DFAs with more states than this are not batched at all (every state walked lazily).
    MAX_BATCH_STATES = 4096
    #: A state with more than this fraction of a trie level alive leaves the batch.
    DENSE_FRACTION = 0.1
    #: Eager single-state walks: max(MIN_DENSE, DENSE_NODE_BUDGET // trie nodes) states
    #: (SmolLM2, 100k nodes: 29 states, ~12-30 ms; Gemma-3, 588k nodes: 16, ~35-50 ms).
    MIN_DENSE = 16
    DENSE_NODE_BUDGET = 3_000_000

    def __init__(self, dfa: ByteDFA, vocab: Vocabulary) -> None:
        super().__init__(vocab)
        self.dfa = dfa
        self.trie = trie_for(vocab)
        # Flattened transitions with an extra sink state standing for "dead" (see TokenTrie.walk).
        self.sink = dfa.n_states
        table = np.where(dfa.transitions >= 0, dfa.transitions, self.sink)
        self.table = np.concatenate([table, np.full((1, 256), self.sink)]).astype(np.int32).ravel()
        self._precomputed: dict[int, np.ndarray] | None = None

    @property
    def max_dense_states(self) -> int:
        return max(self.MIN_DENSE, self.DENSE_NODE_BUDGET // max(self.trie.n_nodes, 1))

    def _precompute(self) -> dict[int, np.ndarray]:
        """Allowed content ids of every DFA state that fits the budget (see the class doc)."""
        out: dict[int, np.ndarray] = {}
        n = self.dfa.n_states
        if n > self.MAX_BATCH_STATES:
            return out
        batch = self.trie.walk_many(self, np.arange(n), dense_fraction=self.DENSE_FRACTION)
        dense = np.flatnonzero(batch.dropped)  # BFS numbering: nearest the start first
        for s in np.flatnonzero(~batch.dropped).tolist():
            out[s] = batch.ids(s)
        for s in dense[: self.max_dense_states].tolist():
            out[s] = self.trie.walk(self, s)[0]
        return out

    @property
    def start(self) -> int:
        return self.dfa.initial

    def is_accepting(self, state: State) -> bool:
        return bool(self.dfa.accepting[state])

    def _content_ids(self, state: State) -> np.ndarray:
        if self._precomputed is None:
            self._precomputed = self._precompute()
        ids = self._precomputed.pop(state, None)  # handed out once: allowed_ids caches it
        if ids is None:
            ids, _ = self.trie.walk(self, state)
        return ids

    def step(self, states: np.ndarray, data: np.ndarray) -> np.ndarray:
        return self.table[states * 256 + data]

    def _advance_bytes(self, state: State, data: bytes) -> int | None:
        nxt = self.dfa.walk(state, data)
        return None if nxt == DEAD else nxt

    def forced_bytes(self, state: State) -> bytes:
        return self.dfa.forced_bytes(state)

    def completion_bytes(self, state: State) -> bytes:
        return dfa_completion(self.dfa, state)


class Regex(Constraint):
    """Text that `re.fullmatch(pattern, text)` accepts.

    Python regex syntax. Constructs no finite automaton can enforce (backreferences,
    lookarounds, word boundaries, anchors in the middle) raise UnsupportedRegexError with
    their position; `\\d \\w \\s` match ASCII members only (a narrowing, never a widening).
    """

    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern
        self.dfa = self._shared(("regex", pattern), lambda: regex_to_dfa(pattern))

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"

    def _build(self, vocab: Vocabulary) -> DFAAutomaton:
        return DFAAutomaton(self.dfa, vocab)
