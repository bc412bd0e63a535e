"""What every constraint provides to decode loops, matchers and samplers.

A `Constraint` is the user's description (a regex, later a grammar or a schema). Compiled
against a `Vocabulary` it becomes a `TokenAutomaton`: states are immutable hashable values,
so speculation, rollback and forks are just keeping old states around.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any, Callable, Hashable

import numpy as np
import torch

from ..vocab.token_bytes import Vocabulary

State = Hashable


class _Done:
    """The state after end-of-sequence: nothing more is allowed."""

    _instance: "_Done | None" = None

    def __new__(cls) -> "_Done":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DONE"


DONE = _Done()


class TokenAutomaton(ABC):
    """A constraint compiled for one vocabulary.

    Subclasses implement the content-token part (`_content_ids`, `_advance_bytes`,
    `is_accepting`); this class adds end-of-sequence handling and mask caching, which are the
    same for every constraint.
    """

    #: Cached masks and id sets are dropped (and rebuilt on demand) past this many bytes:
    #: a 262k-token vocabulary costs 256 KiB per cached mask, and generations are unbounded.
    cache_bytes = 256 * 2**20

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._eos = np.array(sorted(vocab.eos_ids), np.int64)
        self._masks: dict[State, torch.Tensor] = {}
        self._ids: dict[State, np.ndarray] = {}
        self._ids_bytes = 0
        self._budget: dict[State, int | None] = {}

    def clear_caches(self) -> None:
        """Forget cached masks and plans (states stay valid: they are values)."""
        self._masks.clear()
        self._ids.clear()
        self._ids_bytes = 0
        self._budget.clear()

    def _keep_mask(self, state: State, mask: torch.Tensor) -> torch.Tensor:
        if (len(self._masks) + 1) * self.vocab.width > self.cache_bytes:
            self._masks.clear()
        self._masks[state] = mask
        return mask

    def _keep_without(self, state: State, base: torch.Tensor, bad: np.ndarray) -> torch.Tensor:
        """Cache as `state`'s mask another automaton's mask `base` less the ids `bad`: `base`
        itself when there are none (a repeated state then costs one lookup), else a copy. For
        automata composed around another one."""
        if len(bad):
            row = base.numpy().copy()
            row[bad] = False
            base = torch.from_numpy(row)
        return self._keep_mask(state, base)

    @property
    @abstractmethod
    def start(self) -> State:
        """The state before any token."""

    @abstractmethod
    def is_accepting(self, state: State) -> bool:
        """Whether the text so far is a complete match (EOS allowed)."""

    @abstractmethod
    def _content_ids(self, state: State) -> np.ndarray:
        """Ids of non-special tokens allowed in `state` (any order)."""

    @abstractmethod
    def _advance_bytes(self, state: State, data: bytes) -> State | None:
        """State after reading a token's bytes, or None if they are not allowed."""

    def forced_bytes(self, state: State) -> bytes:
        """Bytes every continuation of `state` must start with (b"" when none is forced)."""
        return b""

    def completion_bytes(self, state: State) -> bytes | None:
        """A shortest byte string that completes the output from `state` (b"" if accepting);
        None when unknown (then budget-aware decoding cannot plan for this constraint)."""
        return None

    def tokens_to_complete(self, state: State) -> int | None:
        """Tokens needed to complete from `state` along a plan that always exists: the fewest
        tokens spelling `completion_bytes(state)`. None if unknown or not spellable.

        Every state on a plan is credited with the rest of that plan, so taking a plan's first
        token always leads to a state needing at most one token less — budget-aware decoding
        relies on this to never paint itself into a corner.
        """
        if state is DONE:
            return 0
        if state in self._budget:
            return self._budget[state]
        data = self.completion_bytes(state)
        chunks = None if data is None else spell(self.vocab, data)
        need = None if chunks is None else len(chunks)
        self._budget[state] = need
        on_plan = state
        for i, chunk in enumerate(chunks or ()):
            on_plan = self._advance_bytes(on_plan, chunk)
            known = self._budget.get(on_plan)
            if known is None or known > len(chunks) - i - 1:
                self._budget[on_plan] = len(chunks) - i - 1
        return need

    def plan_token(self, state: State) -> int:
        """The first token of the plan behind `tokens_to_complete(state)`."""
        chunks = spell(self.vocab, self.completion_bytes(state) or b"")
        if not chunks:
            return min(self.vocab.eos_ids)
        return next(i for i, b in enumerate(self.vocab.token_bytes)
                    if b == chunks[0] and i not in self.vocab.special_ids)

    def allowed_ids(self, state: State) -> np.ndarray:
        """Ids allowed in `state` (in no particular order), EOS included exactly when accepting."""
        ids = self._ids.get(state)
        if ids is None:
            if state is DONE:
                ids = np.empty(0, np.int64)
            else:
                ids = self._content_ids(state)
                if self.is_accepting(state):
                    ids = np.concatenate([ids, self._eos])
            if self._ids_bytes + ids.nbytes > self.cache_bytes:
                self._ids.clear()
                self._ids_bytes = 0
            self._ids[state] = ids
            self._ids_bytes += ids.nbytes
        return ids

    def mask(self, state: State) -> torch.Tensor:
        """Bool tensor of the logits width (True = allowed). Cached: do not modify it."""
        m = self._masks.get(state)
        if m is None:
            allowed = np.zeros(self.vocab.width, dtype=bool)
            allowed[self.allowed_ids(state)] = True  # numpy scatter: ~20x faster than torch's here
            m = self._keep_mask(state, torch.from_numpy(allowed))
        return m

    def advance(self, state: State, token: int) -> State | None:
        """State after `token`, or None when the token is not allowed in `state`."""
        if state is DONE:
            return None
        if token in self.vocab.eos_ids:
            return DONE if self.is_accepting(state) else None
        if token in self.vocab.special_ids or not 0 <= token < self.vocab.width:
            return None
        return self._advance_bytes(state, self.vocab.token_bytes[token])

    def only_eos(self, state: State) -> bool:
        """Accepting and nothing else can follow: a decode loop may stop without sampling."""
        if state is DONE:
            return False
        ids = self.allowed_ids(state)
        if not 0 < len(ids) <= len(self._eos):  # the decode loop asks every step: skip the
            return False  # membership test for the (usual) large allowed sets
        return bool(np.isin(ids, self._eos).all())


_TOKEN_SETS: dict[str, tuple[frozenset[bytes], int]] = {}


def spell(vocab: Vocabulary, data: bytes) -> list[bytes] | None:
    """Fewest content-token byte strings that concatenate to `data` (None if impossible)."""
    entry = _TOKEN_SETS.get(vocab.fingerprint)
    if entry is None:
        words = frozenset(b for i, b in enumerate(vocab.token_bytes)
                          if b and i not in vocab.special_ids)
        entry = _TOKEN_SETS[vocab.fingerprint] = (words, max(map(len, words)))
    words, longest = entry
    n = len(data)
    best: list[int | None] = [0] + [None] * n
    back = [0] * (n + 1)
    for i in range(n):
        if best[i] is None:
            continue
        for j in range(i + 1, min(n, i + longest) + 1):
            if data[i:j] in words and (best[j] is None or best[i] + 1 < best[j]):
                best[j] = best[i] + 1
                back[j] = i
    if best[n] is None:
        return None
    chunks = []
    j = n
    while j > 0:
        chunks.append(data[back[j] : j])
        j = back[j]
    return chunks[::-1]


#: Constraints made again with equal arguments (the same schema for every document of an
#: extraction run, a grammar read per request) share the compiled form and the per-vocabulary
#: automata of one made earlier in the same thread, if it is among the last `SHARED_MAX` kept
#: (all threads together), so from the second one on, compiling is a lookup and masks of
#: states met before are cached. Per thread because
#: automata fill their caches as they go and are not made for concurrent use; few because an
#: automaton keeps its cached masks (256 KiB each on a 262k-token vocabulary, up to
#: `TokenAutomaton.cache_bytes`) as long as it is shared. `forget_shared()` drops them.
SHARED_MAX = 4
_SHARED: "OrderedDict[Hashable, tuple[Any, dict[str, TokenAutomaton]]]" = OrderedDict()


def forget_shared() -> None:
    """Drop the shared compiled constraints (a benchmark's cold compile starts here)."""
    _SHARED.clear()


class Constraint(ABC):
    """A user-facing constraint: compiled lazily, once per vocabulary."""

    def __init__(self) -> None:
        self._compiled: dict[str, TokenAutomaton] = {}

    def _shared(self, key: Hashable | None, build: Callable[[], Any]) -> Any:
        """`build()`'s result, shared (with this constraint's automata) by the constraints
        made in this thread with the same `key`, while it is among the last `SHARED_MAX`
        kept (all threads together); None: never shared. A `build` that raises caches
        nothing."""
        if key is None:
            return build()
        key = (threading.get_ident(), key)
        entry = _SHARED.get(key)
        if entry is None:
            entry = (build(), self._compiled)
            _SHARED[key] = entry
            while len(_SHARED) > SHARED_MAX:
                _SHARED.popitem(last=False)
        else:
            _SHARED.move_to_end(key)
        self._compiled = entry[1]
        return entry[0]

    def compile(self, vocab: Vocabulary) -> TokenAutomaton:
        automaton = self._compiled.get(vocab.fingerprint)
        if automaton is None:
            automaton = self._compiled[vocab.fingerprint] = self._build(vocab)
        return automaton

    @abstractmethod
    def _build(self, vocab: Vocabulary) -> TokenAutomaton:
        """Compile for a vocabulary (called once per vocabulary)."""

    def parse(self, text: str) -> Any:
        """The value a finished output stands for (`GenerationResult.value`): the text itself,
        unless the constraint describes data (JSON Schema → the parsed object)."""
        return text
