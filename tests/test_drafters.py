"""The grammar-forced drafter learns the model's own split of a forced text: after the output
wrote `{"a": ` as its own tokens, the next `{"a": ` is drafted that way, not canonically."""
from __future__ import annotations

import pytest
import torch

from structgen import Regex
from structgen.decoding.drafters import DraftContext, ForcedDrafter, LookupDrafter
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


KEYS = Regex(r'\{"a":"[a-z]+","bb":"[a-z]+","cc":"[a-z]+"\}')


def _started(constraint, lm):
    """(automaton, vocabulary, a forced drafter started on a 2-token prompt, that prompt)."""
    automaton = constraint.compile(lm.vocab)
    drafter = ForcedDrafter(lm.tokenizer)
    history = [1, 2]
    drafter.start(history)
    return automaton, automaton.vocab, drafter, history


def test_learned_pieces_carry_over_to_new_forced_texts(smollm2):
    """Forced texts rarely repeat (each key is new) but their pieces do: once the model wrote
    `","` as `",` + `"` and `":"` as `":` + `"`, the next key's forced text is drafted that
    way although that text was never seen."""
    automaton, vocab, drafter, history = _started(KEYS, smollm2)
    state = _emit(drafter, automaton, automaton.start, history, _ids(vocab, b'{"', b"a", b'":"', b"x"))
    assert automaton.forced_bytes(state) == b""
    state = _emit(drafter, automaton, state, history, _ids(vocab, b'"'))
    assert automaton.forced_bytes(state) == b',"bb":"'
    assert _propose(drafter, automaton, state, history) == forced_tokens(automaton, state,
                                                                          smollm2.tokenizer)
    # the model's own split of `,"bb":"`: `,` + `"` + `bb` + `":` + `"`
    state = _emit(drafter, automaton, state, history, _ids(vocab, b",", b'"', b"bb", b'":', b'"'))
    state = _emit(drafter, automaton, state, history, _ids(vocab, b"y", b'"'))
    assert automaton.forced_bytes(state) == b',"cc":"'
    canonical = forced_tokens(automaton, state, smollm2.tokenizer)
    assert _ids(vocab, b'":"')[0] in canonical  # canonically one token; learned as two
    assert _propose(drafter, automaton, state, history) == _ids(vocab, b",", b'"', b"cc", b'":',
                                                                b'"')


MIXED = Regex(r'\{"a":1(,"(bb|cc|dd)":("[a-z]+"|[0-9]+))+\}')


def test_a_piece_the_model_runs_past_ends_the_draft(smollm2):
    """A canonical tail that a longer token could merge (`":`, as in `":"`) is drafted once the
    model wrote it as is, and no longer once the model ran past it: the draft stops there."""
    automaton, vocab, drafter, history = _started(MIXED, smollm2)
    state = _emit(drafter, automaton, automaton.start, history, _ids(vocab, b'{"', b"a", b'":', b"1"))
    state = _emit(drafter, automaton, state, history, _ids(vocab, b',"'))
    assert _propose(drafter, automaton, state, history) == []  # `bb":` or `cc":` or `dd":`
    state = _emit(drafter, automaton, state, history, _ids(vocab, b"bb"))
    assert _propose(drafter, automaton, state, history) == []  # `":` is not safe: `":"`
    state = _emit(drafter, automaton, state, history, _ids(vocab, b'":', b"1", b',"', b"cc"))
    assert _propose(drafter, automaton, state, history) == _ids(vocab, b'":')  # learned
    state = _emit(drafter, automaton, state, history, _ids(vocab, b'":"', b"x", b'",', b'"', b"dd"))
    assert automaton.forced_bytes(state) == b'":'
    assert _propose(drafter, automaton, state, history) == []  # run past last time


def test_lookup_kind_grows_with_the_match(smollm2):
    drafter = LookupDrafter()
    drafter.start([5, 6, 7, 8, 9, 5, 6, 7])
    automaton = KEYS.compile(smollm2.vocab)

    def kind(history):
        ctx = DraftContext(history, None, None, SamplingParams(0.0, 1.0, 0), None,
                           torch.ones(automaton.vocab.width, dtype=torch.bool), frozenset())
        return drafter.kind(ctx), drafter.propose(ctx, 8).tokens

    assert kind([5, 6, 7, 8, 9, 5, 6, 7]) == ("lookup:3", [8, 9, 5, 6, 7])
    assert kind([1, 9]) == ("lookup:1", [5, 6, 7])
    assert kind([1, 2, 6]) == ("lookup:1", [7])  # the latest occurrence
    assert kind([3, 4]) == (None, [])
