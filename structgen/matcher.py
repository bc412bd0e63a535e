"""`Matcher`: the low-level, peer-shaped interface to a compiled constraint.

Shaped like xgrammar's and llguidance's matchers so it can be benchmarked against them and
dropped into other decode loops: ask for a mask, consume the chosen token, roll back.
"""
from __future__ import annotations

from typing import Any

import torch

from .constraints.base import DONE, Constraint, State, TokenAutomaton
from .models import LoadedModel
from .vocab.token_bytes import Vocabulary
from .vocab.trie import trie_for


def resolve_vocab(source: Any, width: int | None = None) -> tuple[Vocabulary, Any]:
    """(Vocabulary, HF tokenizer or None) from a LoadedModel, a Vocabulary or an HF tokenizer."""
    if isinstance(source, Vocabulary):
        return source, None
    if isinstance(source, LoadedModel):  # not getattr(source, "vocab"): on an HF tokenizer
        return source.vocab, source.tokenizer  # that property rebuilds a dict (~20 ms)
    key = (id(source), width)
    cached = _VOCABS.get(key)
    if cached is None or cached[1] is not source:
        cached = _VOCABS[key] = (Vocabulary.from_tokenizer(source, width=width), source)
    return cached[0], source


_VOCABS: dict[tuple[int, int | None], tuple[Vocabulary, Any]] = {}


class Matcher:
    """Tracks one sequence through a constraint, token by token.

    `tokenizer` is an HF tokenizer, a `LoadedModel` or a `Vocabulary` (without a tokenizer,
    `forced_tokens` cannot produce canonical tokenizations and returns []).
    """

    def __init__(self, constraint: Constraint | TokenAutomaton, tokenizer: Any, *,
                 vocab_size: int | None = None) -> None:
        self.vocab, self._tokenizer = resolve_vocab(tokenizer, vocab_size)
        self.automaton = (
            constraint if isinstance(constraint, TokenAutomaton) else constraint.compile(self.vocab)
        )
        self._states: list[State] = [self.automaton.start]

    @property
    def state(self) -> State:
        return self._states[-1]

    def mask(self) -> torch.Tensor:
        """Bool tensor of the logits width, True = allowed (EOS exactly when accepting)."""
        return self.automaton.mask(self.state)

    def consume(self, token_id: int) -> bool:
        """Advance by one token; False (and no change) if the token is not allowed."""
        nxt = self.automaton.advance(self.state, int(token_id))
        if nxt is None:
            return False
        self._states.append(nxt)
        return True

    def is_accepting(self) -> bool:
        """The text so far is complete (or EOS was already consumed)."""
        return self.state is DONE or self.automaton.is_accepting(self.state)

    def is_terminated(self) -> bool:
        """EOS has been consumed."""
        return self.state is DONE

    def rollback(self, n: int = 1) -> None:
        """Undo the last `n` consumed tokens."""
        if not 0 <= n < len(self._states):
            raise ValueError(f"cannot roll back {n} tokens: only {len(self._states) - 1} consumed")
        if n:
            del self._states[-n:]

    def reset(self) -> None:
        del self._states[1:]

    def forced_tokens(self) -> list[int]:
        """Tokens that must come next: the canonical tokenization of the forced text.

        The last tokens are backed off while a vocabulary token could span past the forced
        text (the model would never see that split), unless the text then has to end.
        """
        if self._tokenizer is None or self.state is DONE:
            return []
        return forced_tokens(self.automaton, self.state, self._tokenizer)


def forced_tokens(automaton: TokenAutomaton, state: State, tokenizer: Any) -> list[int]:
    """See `Matcher.forced_tokens`."""
    ids, safe = forced_tokenization(automaton, state, tokenizer)
    return ids[:safe]


def forced_tokenization(automaton: TokenAutomaton, state: State,
                        tokenizer: Any) -> tuple[list[int], int]:
    """The canonical tokens of the forced text (cut to whole UTF-8 characters; none when the
    tokenizer rewrites it) and how many of them are safe to emit: the rest could be merged by a
    vocabulary token spanning past the forced text."""
    data = automaton.forced_bytes(state)
    text = data.decode("utf-8", errors="ignore")
    while text and not data.startswith(text.encode("utf-8")):
        text = text[:-1]
    if not text:
        return [], 0
    data = text.encode("utf-8")
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    vocab = automaton.vocab
    if b"".join(vocab.token_bytes[i] for i in ids) != data:
        return [], 0  # the tokenizer rewrote the text (normalisation, prefix space): not safe
    states = [state]
    for i in ids:
        nxt = automaton.advance(states[-1], i)
        if nxt is None:
            return [], 0
        states.append(nxt)
    if automaton.only_eos(states[-1]):
        return ids, len(ids)
    trie = trie_for(vocab)
    start = 0
    for k, i in enumerate(ids):
        if trie.has_extension(data[start:]):
            return ids, k
        start += len(vocab.token_bytes[i])
    return ids, len(ids)
    trie = trie_for(vocab)
    start = 0
    for k, i in enumerate(ids):
        if trie.has_extension(data[start:]):
            return ids[:k]
        start += len(vocab.token_bytes[i])
    return ids
