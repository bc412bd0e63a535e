"""A lexical tracker composed with a JSON automaton: what the items and length trackers share.

Such a tracker reads the output next to the automaton it wraps and refuses only tokens the
inner automaton allows; states are (inner state, tracker state), the tracker state None where
it has nothing to follow. It learns what to follow from the grammar's lexemes after a byte
(`_lexemes_after`), which is why the schema compiler gives the followed parts their own
terminals. Subclasses say how the tracker reads bytes (`_feed`) and which of the inner mask's
tokens it refuses (`_refused`).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, Hashable

import numpy as np
import torch

from ..vocab.token_bytes import Vocabulary
from .base import DONE, State, TokenAutomaton


class FlatVocab:
    """A vocabulary's content tokens as one byte array, for per-token tables built with numpy
    (a Python test per token costs ~0.3 s on Gemma-3's 262k tokens)."""

    def __init__(self, vocab: Vocabulary) -> None:
        special = set(vocab.special_ids)
        words = [b"" if i in special or not w else w for i, w in enumerate(vocab.token_bytes)]
        words += [b""] * (vocab.width - len(words))
        lengths = np.fromiter(map(len, words), np.int64, len(words))
        self.n = len(words)
        self.content = lengths > 0  # bool per id
        self.longest = int(lengths.max(initial=0))
        self.bytes = np.frombuffer(b"".join(words), np.uint8)
        self.token = np.repeat(np.arange(self.n), lengths)  # the token of each byte
        self.pos = np.arange(len(self.bytes)) - np.repeat(np.cumsum(lengths) - lengths, lengths)

    def having(self, at: np.ndarray) -> np.ndarray:
        """Ids (sorted) of the tokens with a byte where the bool array `at` holds."""
        return np.flatnonzero(np.bincount(self.token[at], minlength=self.n))

    def first(self, at: np.ndarray) -> np.ndarray:
        """Per id, the position of its first byte where `at` holds (its length if none)."""
        out = np.full(self.n, np.iinfo(np.int64).max)
        np.minimum.at(out, self.token[at], self.pos[at])
        return out


class BesideAutomaton(TokenAutomaton):
    """`inner` with a tracker beside it (see the module doc)."""

    def __init__(self, inner: Any) -> None:
        """`inner`: a JSON automaton whose `grammar_state` gives its grammar's state."""
        super().__init__(inner.vocab)
        self.inner = inner
        self.grammar = inner.grammar

    @abstractmethod
    def _feed(self, inner_state: State, track: Hashable, data: bytes) -> Hashable:
        """The tracker state after `data` read from (`inner_state`, `track`), or False when the
        tracker refuses `data`."""

    @abstractmethod
    def _refused(self, state: State, base: np.ndarray) -> np.ndarray:
        """Ids of the inner mask `base` (a bool row) the tracker refuses in `state`."""

    def _lexemes_after(self, inner_state: State, data: bytes) -> Callable[[int], frozenset]:
        """The grammar's lexemes (terminal, DFA state, origin) after `data[: i + 1]` read from
        `inner_state`, as a function of i."""
        g = self.inner.grammar_state(inner_state)
        return lambda i: self.grammar._advance_bytes(g, data[: i + 1])

    def grammar_state(self, state: State) -> State:
        return self.inner.grammar_state(state[0])

    def clear_caches(self) -> None:
        super().clear_caches()
        self.inner.clear_caches()

    @property
    def start(self) -> State:
        return (self.inner.start, None)

    def is_accepting(self, state: State) -> bool:
        return state is not DONE and self.inner.is_accepting(state[0])

    def _advance_bytes(self, state: State, data: bytes) -> State | None:
        inner_state, track = state
        nxt = self.inner._advance_bytes(inner_state, data)
        if nxt is None:
            return None
        track = self._feed(inner_state, track, data)
        return None if track is False else (nxt, track)

    def mask(self, state: State) -> torch.Tensor:
        """The inner mask (the same cached tensor) unless the tracker refuses some of its
        tokens here; then a copy without them (cached per state). Do not modify it."""
        m = self._masks.get(state)
        if m is None:
            if state is DONE:
                return super().mask(state)
            base = self.inner.mask(state[0])
            m = self._keep_without(state, base, self._refused(state, base.numpy()))
        return m

    def _content_ids(self, state: State) -> np.ndarray:
        ids = np.flatnonzero(self.mask(state).numpy())
        return ids[~np.isin(ids, self._eos)]

    def only_eos(self, state: State) -> bool:
        # accepting states are at the top level, where trackers follow nothing
        return state is not DONE and self.inner.only_eos(state[0])

    def forced_bytes(self, state: State) -> bytes:
        # trackers never strand a state, so what the inner automaton forces is allowed
        return self.inner.forced_bytes(state[0])
