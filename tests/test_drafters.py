"""The grammar-forced drafter learns the model's own split of a forced text: after the output
wrote `{"a": ` as its own tokens, the next `{"a": ` is drafted that way, not canonically."""
from __future__ import annotations

import pytest
import torch

from structgen import Regex
from structgen.decoding.drafters import DraftContext, ForcedDrafter
from structgen.decoding.sampling import SamplingParams
from structgen.matcher import forced_tokens

pytestmark = pytest.mark.model

TWICE = Regex(r'\{"a": [a-z]+\}\{"a": [a-z]+\}')


def _ids(vocab, *pieces: bytes) -> list[int]:
    return [next(i for i, b in enumerate(vocab.token_bytes) if b == p and i not in vocab.special_ids)
            for p in pieces]


def _propose(drafter: ForcedDrafter, automaton, state, history: list[int]) -> list[int]:
    ctx = DraftContext(list(history), automaton, state, SamplingParams(0.0, 1.0, 0), None,
                       torch.ones(automaton.vocab.width, dtype=torch.bool),
                       automaton.vocab.eos_ids)
    return drafter.propose(ctx, 16).tokens


def _emit(drafter: ForcedDrafter, automaton, state, history: list[int], ids: list[int]):
    for token in ids:
        state = automaton.advance(state, token)
        assert state is not None
        history.append(token)
        drafter.observe(token)
    return state


@pytest.mark.parametrize("split,learned", [
    ((b"{", b'"', b"a", b'":', b" "), (b"{", b'"', b"a", b'":', b" ")),  # covered exactly
    ((b"{", b'"', b"a", b'":', b" x"), (b"{", b'"', b"a", b'":')),  # last token ran past it
])
def test_forced_drafter_proposes_the_models_own_split(smollm2, split, learned):
    automaton = TWICE.compile(smollm2.vocab)
    vocab = automaton.vocab
    drafter = ForcedDrafter(smollm2.tokenizer)
    history = [1, 2]
    drafter.start(history)
    state = automaton.start
    canonical = forced_tokens(automaton, state, smollm2.tokenizer)
    assert _propose(drafter, automaton, state, history) == canonical
    assert canonical != _ids(vocab, *learned)  # else the test would show nothing
    state = _emit(drafter, automaton, state, history, _ids(vocab, *split))
    value = (b"x", b"}") if split[-1] == b" " else (b"}",)  # finish the first object
    state = _emit(drafter, automaton, state, history, _ids(vocab, *value))
    assert automaton.forced_bytes(state) == b'{"a": '
    assert _propose(drafter, automaton, state, history) == _ids(vocab, *learned)
