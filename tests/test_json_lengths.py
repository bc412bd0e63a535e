"""Large maxLength on plain strings (structgen.constraints.json_lengths), against oracles.

1. The counter alone: `feed` refuses a string exactly when Python's `len` of its value passes
   the cap (hypothesis: any code points, astral ones as surrogate-pair escapes or UTF-8, random
   splits).
2. Near the cap masks equal the brute force (`advance` of every token), also mid-escape and
   inside a surrogate pair; completions validate; far from it nothing is refused.
3. Compilation: which strings are capped, and what stays refused (named).
"""
from __future__ import annotations

import json
import random

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen import JsonSchema, UnsupportedSchemaError
from structgen.constraints.json_lengths import LengthCapAutomaton, feed


@settings(max_examples=400, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=12), st.booleans(),
       st.integers(0, 14), st.data())
def test_feed_refuses_exactly_past_the_cap(value: str, ascii_only: bool, cap: int,
                                           data: st.DataObject) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=6)))
    state, refused = None, False
    for a, b in zip([0, *cuts], [*cuts, len(text)]):
        state = feed(state, text[a:b], lambda i, a=a: cap if a + i == 0 else None)
        if state is False:
            refused = True
            break
    assert refused == (len(value) > cap), (text, cap)
    if not refused:
        assert state is None  # the string was closed


SCHEMA = {"type": "object", "properties": {"d": {"type": "string", "maxLength": 10000}},
          "required": ["d"]}


@pytest.fixture(scope="module")
def capped(smollm2_vocab):
    automaton = JsonSchema(SCHEMA, whitespace="flexible", spelling="any").compile(smollm2_vocab)
    assert isinstance(automaton, LengthCapAutomaton)
    return automaton


def _state_after(automaton, tokenizer, text: str):
    state = automaton.start
    for t in tokenizer.encode(text, add_special_tokens=False):
        state = automaton.advance(state, t)
        assert state is not None
    return state


@pytest.mark.parametrize("body, refusing", [
    ("a" * 9990, True), ("a" * 9999, True), ("a" * 10000, True), ("a" * 9998 + "\\u00", True),
    ("a" * 9999 + "\\ud83d", False),  # the low half of the pair adds no code point
    ("a" * 9999 + "\\", True), ("é" * 9999, True)])
def test_masks_near_the_cap_equal_brute_force(body, refusing, capped, smollm2,
                                              smollm2_vocab) -> None:
    prefix = '{"d": "' + body
    state = _state_after(capped, smollm2.tokenizer, prefix)
    mask = capped.mask(state).numpy()
    inner = capped.inner.mask(state[0]).numpy()
    words = smollm2_vocab.token_bytes
    refused = 0
    for t in range(len(words)):
        if not words[t] or t in smollm2_vocab.special_ids:
            continue
        assert mask[t] == (capped.advance(state, t) is not None), words[t]
        refused += bool(inner[t] and not mask[t])
    assert (refused > 0) == refusing
    done = json.loads(prefix.encode() + capped.completion_bytes(state))
    assert jsonschema.Draft202012Validator(SCHEMA).is_valid(done)


def test_nothing_is_refused_far_from_the_cap(capped, smollm2) -> None:
    state = _state_after(capped, smollm2.tokenizer, '{"d": "' + "word " * 20)
    assert capped.mask(state) is capped.inner.mask(state[0])  # the same tensor


def test_random_walks_in_a_capped_string_stay_valid(smollm2_vocab) -> None:
    schema = {"type": "array", "items": {"type": "string", "maxLength": 9000, "minLength": 2}}
    automaton = JsonSchema(schema).compile(smollm2_vocab)
    assert isinstance(automaton, LengthCapAutomaton)
    words = smollm2_vocab.token_bytes
    rnd = random.Random(3)
    for _ in range(6):
        state, text = automaton.start, b""
        for _ in range(30):
            ids = [i for i in automaton.allowed_ids(state).tolist()
                   if i not in smollm2_vocab.eos_ids]
            if not ids:
                break
            t = rnd.choice(ids)
            state = automaton.advance(state, t)
            text += words[t]
        done = json.loads(text + automaton.completion_bytes(state))
        assert jsonschema.Draft202012Validator(schema).is_valid(done), done


@pytest.mark.parametrize("schema, capped", [
    ({"type": "string", "maxLength": 65535}, True),
    ({"type": "string", "maxLength": 10000, "minLength": 3}, True),
    ({"type": "string", "maxLength": 300}, False),  # small enough for an exact DFA
])
def test_which_strings_are_capped(schema, capped, smollm2_vocab) -> None:
    automaton = JsonSchema(schema).compile(smollm2_vocab)
    assert isinstance(automaton, LengthCapAutomaton) == capped


@pytest.mark.parametrize("schema, keyword, reason", [
    ({"type": "string", "maxLength": 10000, "pattern": "^a"}, "maxLength", "states"),
    ({"anyOf": [{"type": "string", "maxLength": 10000}, {"type": "string", "pattern": "^a"}]},
     "maxLength", "overlapping alternatives"),
    ({"type": "array", "contains": {"type": "string", "maxLength": 20000}}, "maxLength",
     "array with contains"),
])
def test_what_stays_refused_is_named(schema, keyword, reason) -> None:
    with pytest.raises(UnsupportedSchemaError, match=reason) as e:
        JsonSchema(schema)
    assert e.value.keyword == keyword
