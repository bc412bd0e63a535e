"""maxLength on plain strings (structgen.constraints.json_lengths), against oracles.

1. The counter alone: `feed` refuses a string exactly when Python's `len` of its value passes
   the cap (hypothesis: any code points, astral ones as surrogate-pair escapes or UTF-8, random
   splits).
2. Near the cap masks equal the brute force (`advance` of every token), also mid-escape and
   inside a surrogate pair; completions validate; far from it nothing is refused. Caps under a
   token's length too: a toy vocabulary whose tokens open a string and overfill it, and
   SmolLM2's at many counts.
3. Compilation: which strings are capped, which take their exact DFA (a string the parser could
   read two ways) and keep their bound, and what stays refused (named).
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
    ({"type": "string", "maxLength": 300}, True),
    ({"type": "string", "maxLength": 16}, True),
    ({"type": "string", "maxLength": 15}, False),  # (an exact DFA: few counts to walk)
    ({"type": "string", "maxLength": 300, "pattern": "^a"}, False),
    # the parser could read one string two ways: the exact DFA, no counter
    ({"anyOf": [{"type": "string", "maxLength": 300}, {"type": "string", "pattern": "^a"}]},
     False),
    ({"type": "array", "contains": {"type": "string", "maxLength": 300}}, False),
    ({"anyOf": [{"type": "object", "properties": {"a": {"maxLength": 40, "type": "string"}}},
                {"type": "object", "properties": {"b": {"type": "integer"}}}]}, False),
])
def test_which_strings_are_capped(schema, capped, smollm2_vocab) -> None:
    automaton = JsonSchema(schema).compile(smollm2_vocab)
    assert isinstance(automaton, LengthCapAutomaton) == capped


def test_a_capped_string_can_be_empty_of_values(smollm2_vocab) -> None:
    """minLength above maxLength: no string, capped or not (the terminal is not made)."""
    automaton = JsonSchema({"anyOf": [{"type": "string", "minLength": 40, "maxLength": 30},
                                      {"type": "integer"}]}).compile(smollm2_vocab)
    assert not isinstance(automaton, LengthCapAutomaton)
    assert automaton.advance(automaton.start, smollm2_vocab.token_bytes.index(b'"')) is None


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


SMALL = {"type": "object", "properties": {
    "a": {"type": "string", "maxLength": 16},
    "b": {"type": "string", "maxLength": 17, "minLength": 1}}, "required": ["a", "b"]}


def _toy_vocab():
    """Single bytes plus tokens that open a capped string and fill it past its cap, close one
    and open the next, or add several code points at once (escapes, surrogate pairs, UTF-8)."""
    from structgen.vocab.token_bytes import Vocabulary

    long = [b'"' + b"a" * 20, b'"' + b"a" * 15 + b'"', b'", "b": "' + b"x" * 18,
            b'", "b": "' + b"x" * 16, b'","b":"xy', b"a" * 20, b"a" * 5, b"\\u00e9" * 3,
            b"\\ud83d\\ude00", b"\\ud83d", b"\\ude00ab", b"\xc3\xa9" * 6, b"\xa9\xc3\xa9",
            b"\\n\\t\\\"", b'": "' + b"b" * 17, b'":"' + b"\\u00e9" * 4]
    words = tuple(bytes([b]) for b in range(256)) + tuple(long) + (b"",)
    n = len(words)
    return Vocabulary(token_bytes=words, width=n, eos_ids=frozenset({n - 1}),
                      special_ids=frozenset({n - 1}))


def test_small_caps_masks_equal_brute_force_along_random_walks() -> None:
    """Caps under a token's length (here 16 and 17 code points): at every state of random
    walks, the mask allows exactly the tokens `advance` takes — tokens that open a capped
    string and overfill it, close one string and overfill the next, or add many code points
    through escapes and UTF-8 — and every walk completes valid."""
    vocab = _toy_vocab()
    automaton = JsonSchema(SMALL, whitespace="flexible", spelling="any").compile(vocab)
    assert isinstance(automaton, LengthCapAutomaton)
    assert len(automaton._openers) >= 4  # the long tokens after a quote
    validator = jsonschema.Draft202012Validator(SMALL)
    rnd = random.Random(11)
    refused_somewhere = 0
    for _ in range(25):
        state, text = automaton.start, b""
        for _ in range(40):
            mask = automaton.mask(state).numpy()
            inner = automaton.inner.mask(state[0]).numpy()
            ids = []
            for t in range(vocab.width - 1):
                ok = automaton.advance(state, t) is not None
                assert mask[t] == ok, (text, vocab.token_bytes[t])
                refused_somewhere += bool(inner[t] and not ok)
                if ok:
                    ids.append(t)
            if not ids:
                break
            long = [t for t in ids if len(vocab.token_bytes[t]) > 1]
            t = rnd.choice(long if long and rnd.random() < 0.6 else ids)
            state, text = automaton.advance(state, t), text + vocab.token_bytes[t]
        done = json.loads(text + automaton.completion_bytes(state))
        assert validator.is_valid(done), done
    assert refused_somewhere > 100


def test_small_caps_on_a_real_vocabulary(smollm2, smollm2_vocab) -> None:
    """SmolLM2: along a text filling both strings to their caps, every token the inner mask
    allows is allowed exactly when `advance` takes it (states at many counts, mid-escape and
    mid-character included)."""
    automaton = JsonSchema(SMALL, whitespace="flexible", spelling="any").compile(smollm2_vocab)
    words = smollm2_vocab.token_bytes
    prefixes = ['{"a": "', '{"a": "abcdefghij', '{"a": "abcdéfghijklm',
                '{"a": "abcdefghijklmn\\u00',
                '{"a": "abcdefghijklmnop', '{"a": "x", "b": "', '{"a": "x", "b": "\\ud83d',
                '{"a": "x", "b": "0123456789abcdef']
    for prefix in prefixes:
        state = _state_after(automaton, smollm2.tokenizer, prefix)
        mask = automaton.mask(state).numpy()
        inner = automaton.inner.mask(state[0]).numpy()
        for t in inner.nonzero()[0].tolist():
            if words[t] and t not in smollm2_vocab.special_ids:
                assert mask[t] == (automaton.advance(state, t) is not None), (prefix, words[t])


@pytest.mark.parametrize("schema, fits, over", [
    ({"anyOf": [{"type": "string", "maxLength": 30}, {"type": "string", "pattern": "^a"}]},
     '"' + "b" * 30 + '"', '"' + "b" * 31 + '"'),
    ({"type": "array", "contains": {"type": "string", "maxLength": 20}},
     '["' + "c" * 20 + '"]', '["' + "c" * 21 + '"]'),
    ({"anyOf": [{"type": "object", "properties": {"a": {"maxLength": 40, "type": "string"}}},
                {"type": "object", "properties": {"b": {"type": "integer"}},
                 "additionalProperties": False}]},
     '{"a": "' + "d" * 40 + '"}', '{"a": "' + "d" * 41 + '"}'),
])
def test_uncapped_strings_keep_their_bound(schema, fits, over, smollm2, smollm2_vocab) -> None:
    """Where the parser could read a string two ways it takes its exact DFA: the bound holds
    there too (one more code point is refused)."""
    automaton = JsonSchema(schema, whitespace="flexible").compile(smollm2_vocab)
    assert not isinstance(automaton, LengthCapAutomaton)
    for text, ok in ((fits, True), (over, False)):
        state = automaton.start
        for t in smollm2.tokenizer.encode(text, add_special_tokens=False):
            state = None if state is None else automaton.advance(state, t)
        assert (state is not None and automaton.is_accepting(state)) == ok, text
