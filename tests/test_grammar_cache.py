"""Grammar states are values: dropping the automaton's caches (past `max_states`) must not
change any mask, any transition, or invalidate states a caller holds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from structgen import Grammar

pytestmark = pytest.mark.model
JSON = (Path(__file__).resolve().parent.parent / "grammars" / "json.lark").read_text()


def test_masks_survive_cache_drops(smollm2) -> None:
    text = '{"name": "Ada", "tags": ["x", 1.5e3, true], "nested": {"a": [null, {}]}}'
    ids = smollm2.tokenizer.encode(text, add_special_tokens=False)
    reference = Grammar(JSON).compile(smollm2.vocab)
    small = Grammar(JSON).compile(smollm2.vocab)
    small.max_states = 50  # forces a drop on almost every call
    ref_state, state, held, ref_held = reference.start, small.start, [], []
    for token in ids:
        assert np.array_equal(np.sort(reference.allowed_ids(ref_state)), np.sort(small.allowed_ids(state)))
        assert reference.is_accepting(ref_state) == small.is_accepting(state)
        held.append(state)
        ref_held.append(ref_state)
        ref_state, state = reference.advance(ref_state, token), small.advance(state, token)
        assert state is not None
    assert small.is_accepting(state)
    # states taken before many drops are still valid values: same masks, same plans
    for old, ref_old in zip(held, ref_held):
        assert np.array_equal(np.sort(small.allowed_ids(old)), np.sort(reference.allowed_ids(ref_old)))
        assert small.tokens_to_complete(old) == reference.tokens_to_complete(ref_old)
