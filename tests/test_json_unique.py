"""uniqueItems over open item values (structgen.constraints.json_unique), against oracles.

1. The tracker alone: `feed` refuses an array text exactly when jsonschema finds two equal items
   (hypothesis: random values with duplicates, random spellings, whitespace and splits).
2. Masks equal the brute force (`advance` of every token; on Gemma-3 every refused token and
   a sample of the rest), so the candidate filters drop nothing; refused tokens have no valid
   completion among many suffixes tried, allowed ones complete (`completion_bytes`) to
   documents jsonschema accepts.
3. Random walks over the masks never get stuck; their completions validate.
4. Compilation: which item schemas are tracked, and what stays refused (named).
5. SmolLM2 writes a list of distinct tags under a tight budget.
6. The per-vocabulary tables (numpy) equal their per-token definitions.
"""
from __future__ import annotations

import json
import random
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from structgen import JsonSchema, UnsupportedSchemaError, generate
from structgen.constraints.json_unique import UniqueItemsAutomaton, feed, value_key


def _valid(schema: Any, value: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


# --- 1. the tracker ------------------------------------------------------------------------

def test_value_key_is_json_schema_equality() -> None:
    same = [(b"1", b"1.0"), (b"1", b"1e0"), (b"-0", b"0"), (b'"a"', b'"\\u0061"'),
            (b'{"a": 1, "b": [2]}', b'{"b": [2.0], "a": 1}'), (b"[]", b" [ ] ")]
    for x, y in same:
        assert value_key(x) == value_key(y), (x, y)
    differ = [(b"1", b"true"), (b"0", b"false"), (b"[1, 2]", b"[2, 1]"), (b'"1"', b"1"),
              (b"null", b"0"), (b'{"a": 1}', b'{"a": 1, "b": 1}')]
    for x, y in differ:
        assert value_key(x) != value_key(y), (x, y)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                     st.sampled_from([0.0, 1.0, 1.5, -0.5, 1e20]),
                     st.text("ab\u00e9\"\\", max_size=3))
_values = st.recursive(_scalars, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.dictionaries(st.text("ab", max_size=2), kids, max_size=3)),
    max_leaves=6)


def _spell(value: Any, rnd: random.Random) -> str:
    """One JSON spelling of `value`: random whitespace, escapes and number forms."""
    ws = lambda: rnd.choice(["", " ", "\n  "])  # noqa: E731
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        forms = [json.dumps(value)]
        if isinstance(value, int):
            forms += [f"{value}.0", f"{value}e0"]
        return rnd.choice(forms)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=rnd.random() < 0.5)
    if isinstance(value, list):
        return "[" + ws() + ("," + ws()).join(_spell(v, rnd) for v in value) + ws() + "]"
    items = list(value.items())
    rnd.shuffle(items)
    return "{" + ",".join(f"{ws()}{json.dumps(k)}{ws()}:{ws()}{_spell(v, rnd)}"
                          for k, v in items) + ws() + "}"


@settings(max_examples=300, deadline=None)
@given(st.lists(_values, max_size=5), st.randoms(use_true_random=False), st.data())
def test_feed_refuses_exactly_the_arrays_with_equal_items(items: list, rnd: random.Random,
                                                          data: st.DataObject) -> None:
    if items and data.draw(st.booleans()):
        items.append(data.draw(st.sampled_from(items)))  # a duplicate, often respelled
    text = _spell(items, rnd).encode()
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=6)))
    state, refused = None, False
    for a, b in zip([0, *cuts], [*cuts, len(text)]):
        # the outer "[" opens the tracked array; any other one is a plain array inside
        state = feed(state, text[a:b], lambda i, a=a: a + i == 0)
        if state is False:
            refused = True
            break
    assert refused == (not _valid({"uniqueItems": True}, items)), text
    if not refused:
        assert state is None  # the array was closed


# --- 2. masks ------------------------------------------------------------------------------

SCHEMAS = {
    "any": {"type": "array", "uniqueItems": True},
    "tags": {"type": "object", "properties": {"tags": {
        "type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"},
        "uniqueItems": True, "minItems": 2}}, "required": ["tags"]},
    "records": {"type": "array", "uniqueItems": True, "items": {
        "type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}},
    "mixed": {"type": "array", "uniqueItems": True, "items": {"type": ["string", "null",
                                                                   "boolean", "number"]}},
    "lists": {"type": "array", "uniqueItems": True, "items": {
        "type": "array", "items": {"type": "integer"}}},
    "ints": {"type": "array", "uniqueItems": True, "items": {"type": "integer"}},
    # finite positions first (the grammar), open ones after (the tracker)
    "tuple": {"type": "array", "uniqueItems": True, "minItems": 3, "prefixItems": [
        {"type": "boolean"}, {"enum": [True, "x"]}], "items": {"type": ["boolean", "string"]}},
}
# compile options: any spelling and flexible whitespace, but integers only spelled canonically
OPTIONS = {name: {"whitespace": "flexible", "spelling": "any", "property_order": "any"}
           for name in SCHEMAS}
OPTIONS["ints"] = {"spelling": "canonical"}
PREFIXES = {
    "any": ['[1, "a", [1], {"k": true}, null, tr', '[1, "a", [1], {"k": true}, null, "', '[1, 1',
            '[1, "a", [1], {"k": true}, null, [1', '[1, "a", [1], {"k": true}, null, {"k": true',
            '[1, "a", [1], {"k": true}, null, '],
    "tags": ['{"tags": ["ab", "a', '{"tags": ["ab", "', '{"tags": ["ab", "abc", "ab'],
    "records": ['[{"id": "x"}, {"id": "x"', '[{"id": "x"}, {"id": "', '[{"id": "x"}, '],
    "mixed": ['[1.5, null, "n", true, ', '[1.5, null, "n", true, 1.', '[1.5, null, "n", "'],
    "lists": ['[[1, 2], [1, 2', '[[1, 2], [], [', '[[1, 2], []'],
    "ints": ["[0,1,-1,", "[0,1,-1,1", "[0,1,-1,-", "[5,", "[0,10"],
    "tuple": ["[true, ", '[false, "x", ', '[true, "x", ', '[true, "x", "y", "'],
}
SUFFIXES = ["", '"', "]", '"]', "}]", ', "q"]', 'x"]', "true]", "false]", '"}]', "]}", '"]}',
            "0]", "1]", '1"]', 'a"]', 'z"]', '1"]}', 'a"]}', "e]", "rue]", "ull]", "alse]",
            '}, {"id": "q"}]', ', 0.25]', "]]", ", 3]]", "7]]"]


def _state_after(automaton: UniqueItemsAutomaton, tokenizer: Any, text: str) -> Any:
    state = automaton.start
    for t in tokenizer.encode(text, add_special_tokens=False):
        state = automaton.advance(state, t)
        assert state is not None, text
    return state


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_masks_equal_brute_force_and_refusals_have_no_valid_completion(name, smollm2,
                                                                        smollm2_vocab) -> None:
    schema = SCHEMAS[name]
    automaton = JsonSchema(schema, **OPTIONS[name]).compile(smollm2_vocab)
    assert isinstance(automaton, UniqueItemsAutomaton)
    words = smollm2_vocab.token_bytes
    inner_refusals = 0
    for prefix in PREFIXES[name]:
        state = _state_after(automaton, smollm2.tokenizer, prefix)
        mask = automaton.mask(state).numpy()
        inner = automaton.inner.mask(state[0]).numpy()
        for t in range(len(words)):
            if not words[t] or t in smollm2_vocab.special_ids:
                continue
            assert mask[t] == (automaton.advance(state, t) is not None), (prefix, words[t])
            if inner[t] and not mask[t]:
                inner_refusals += 1
                text = prefix + words[t].decode("utf-8", "replace")
                for suffix in SUFFIXES:
                    try:
                        value = json.loads(text + suffix)
                    except ValueError:
                        continue
                    assert not _valid(schema, value), (text, suffix)
        done = prefix.encode() + automaton.completion_bytes(state)
        assert _valid(schema, json.loads(done)), done
    assert inner_refusals > 0  # the tracker refused something here


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_random_walks_never_stall_and_complete_valid(name, smollm2_vocab) -> None:
    schema = SCHEMAS[name]
    automaton = JsonSchema(schema, **OPTIONS[name]).compile(smollm2_vocab)
    words = smollm2_vocab.token_bytes
    rnd = random.Random(7)
    eos = set(smollm2_vocab.eos_ids)
    for _ in range(12):
        state, text = automaton.start, b""
        for _ in range(40):
            ids = [i for i in automaton.allowed_ids(state).tolist() if i not in eos]
            assert ids or automaton.is_accepting(state), text
            if not ids:
                break
            # short tokens and structure often: more items, more chances of a duplicate
            short = [i for i in ids if len(words[i]) <= 2]
            t = rnd.choice(short if short and rnd.random() < 0.8 else ids)
            state = automaton.advance(state, t)
            text += words[t]
        done = text + automaton.completion_bytes(state)
        assert _valid(schema, json.loads(done)), done


# --- 4. compilation ------------------------------------------------------------------------

@pytest.mark.parametrize("items", [
    {"type": "string"}, {"type": "string", "pattern": "^[a-z]"}, {"type": ["string", "null"]},
    {"type": "object"}, {"type": "number"}, {"$ref": "#/$defs/s"}, {},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"type": "array", "items": {"type": "integer"}}])
def test_open_items_are_tracked(items, smollm2_vocab) -> None:
    schema = {"type": "array", "items": items, "uniqueItems": True,
              "$defs": {"s": {"type": "string", "minLength": 1}}}
    assert isinstance(JsonSchema(schema).compile(smollm2_vocab), UniqueItemsAutomaton)


@pytest.mark.parametrize("schema, reason", [
    ({"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True},
     "nor open"),
    ({"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True},
     "nor open"),
    ({"type": "array", "items": {"type": "object", "additionalProperties": False},
      "uniqueItems": True}, "nor open"),
    ({"type": "array", "items": {"type": "array", "maxItems": 2}, "uniqueItems": True},
     "nor open"),
    ({"type": "array", "uniqueItems": True, "items": {
        "type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}},
     "inside the items of another"),
    ({"anyOf": [{"type": "array", "uniqueItems": True}, {"type": "array", "minItems": 3}]},
     "overlapping alternatives"),
    ({"type": "array", "contains": {"type": "array", "uniqueItems": True}},
     "array with contains"),
])
def test_what_stays_refused_is_named(schema, reason) -> None:
    with pytest.raises(UnsupportedSchemaError, match=reason) as e:
        JsonSchema(schema)
    assert e.value.keyword == "uniqueItems"


def test_integers_are_tracked_only_in_canonical_spelling(smollm2_vocab) -> None:
    schema = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}
    assert isinstance(JsonSchema(schema).compile(smollm2_vocab), UniqueItemsAutomaton)
    with pytest.raises(UnsupportedSchemaError, match="nor open"):
        JsonSchema(schema, spelling="any")  # "1e-" could only be 1 ("1e-0"): fixed early


def test_finite_domains_keep_the_grammar(smollm2_vocab) -> None:
    schema = {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True}
    assert not isinstance(JsonSchema(schema).compile(smollm2_vocab), UniqueItemsAutomaton)


def test_lenient_drops_what_it_cannot_track() -> None:
    js = JsonSchema({"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
                    spelling="any", lenient=True)
    assert any("uniqueItems" in w for w in js.warnings)


# --- 5. a real model -----------------------------------------------------------------------

@pytest.mark.usefixtures("one_thread")
def test_smollm2_writes_distinct_tags_within_budget(smollm2) -> None:
    schema = {"type": "object", "properties": {"tags": {
        "type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True,
        "minItems": 3}}, "required": ["tags"]}
    result = generate(smollm2, "Tags for a post about cats, as JSON: ", JsonSchema(schema),
                      max_tokens=24)
    assert result.finished, result
    assert _valid(schema, result.value), result.text


def test_vocab_tables_match_their_definitions(smollm2_vocab) -> None:
    """The per-vocabulary tables, built with numpy, against their per-token definitions."""
    import numpy as np

    from structgen.constraints.json_lengths import _VocabCounts
    from structgen.constraints.json_unique import _VocabBytes

    special = set(smollm2_vocab.special_ids)
    words = [b"" if i in special or not w else w for i, w in enumerate(smollm2_vocab.token_bytes)]
    words += [b""] * (smollm2_vocab.width - len(words))

    def ids(test) -> np.ndarray:
        return np.array([i for i, w in enumerate(words) if w and test(w)], np.int64)

    items = _VocabBytes(smollm2_vocab)
    assert np.array_equal(items.quote, ids(lambda w: b'"' in w))
    assert np.array_equal(items.close, ids(lambda w: b"]" in w or b"}" in w))
    assert np.array_equal(items.comma, ids(lambda w: b"," in w))
    assert np.array_equal(items.enter_twice,
                          ids(lambda w: b"[" in w and b"," in w[w.index(b"["):]))
    assert np.array_equal(items.item_start, ids(
        lambda w: w.count(b'"') >= 2 or any(c in w for c in b",]}")
        or w.lstrip(b" \t\n\r")[:1] in (b"t", b"f", b"n", b"-", *(b"%d" % d for d in range(10)))))
    counts = _VocabCounts(smollm2_vocab).counts
    for i, w in enumerate(words):
        assert counts[i] == (_code_points_before_quote(w) if w else 0), w


def _code_points_before_quote(w: bytes) -> int:
    """Code points a token adds inside a string, up to its first unescaped quote, read as
    units: an escape (whole or cut off by the token's end) counts one, but for the low half
    of a surrogate pair right after its high half; a byte counts unless it continues a UTF-8
    character."""
    import re

    count, after_high = 0, False
    for unit in re.findall(rb"\\u[0-9a-fA-F]{0,4}|\\.?|.", w, re.S):
        if unit == b'"':
            break
        if unit.startswith(b"\\"):
            low = len(unit) == 6 and 0xDC00 <= int(unit[2:], 16) <= 0xDFFF
            count += not (after_high and low)
            after_high = len(unit) == 6 and 0xD800 <= int(unit[2:], 16) <= 0xDBFF
        else:
            count += not 0x80 <= unit[0] < 0xC0
            after_high = False
    return count


def _without_endless_future(dfa) -> set[int]:
    """Live states of a number DFA from which only finitely many texts continue."""
    import numpy as np

    table = dfa.transitions
    succ = [set(np.unique(row[row >= 0]).tolist()) for row in table]
    endless, changed = set(range(len(table))), True
    while changed:  # prune states with no successor left: what stays reaches a cycle
        changed = False
        for s in list(endless):
            if not succ[s] & endless:
                endless.discard(s)
                changed = True
    live, todo = {dfa.initial}, [dfa.initial]
    while todo:
        for t in succ[todo.pop()] - live:
            live.add(t)
            todo.append(t)
    return live - endless


def test_number_items_are_fixed_only_where_the_tracker_looks() -> None:
    """Why numbers are open items: a number's value is checked after its last byte, so every
    state of its DFA must still have infinitely many continuations — except, for canonical
    integers, the state after "0", where the tracker asks the lexemes (`ends`). Integers spelled
    any way have more such states ("1e-" can only be 1), hence their refusal."""
    from structgen.schema.lexemes import json_number_dfa

    for canonical in (False, True):
        assert not _without_endless_future(json_number_dfa(integer=False, canonical=canonical))
    integers = json_number_dfa(integer=True, canonical=True)
    assert _without_endless_future(integers) == {integers.walk(integers.initial, b"0")}
    assert len(_without_endless_future(json_number_dfa(integer=True))) > 1


@pytest.mark.parametrize("name", ["any", "tags", "ints"])
def test_masks_equal_brute_force_on_gemma(name, gemma, gemma_vocab) -> None:
    """Gemma-3's 262k tokens (longer ones, such as `", "` runs): every token the tracker
    refuses, and a sample of the rest, against `advance`."""
    automaton = JsonSchema(SCHEMAS[name], **OPTIONS[name]).compile(gemma_vocab)
    words = gemma_vocab.token_bytes
    content = [t for t in range(len(words)) if words[t] and t not in gemma_vocab.special_ids]
    rnd = random.Random(name)
    refused = 0
    for prefix in PREFIXES[name]:
        state = _state_after(automaton, gemma.tokenizer, prefix)
        mask = automaton.mask(state).numpy()
        inner = automaton.inner.mask(state[0]).numpy()
        tried = [t for t in content if inner[t] and not mask[t]]
        refused += len(tried)
        tried += rnd.sample(content, 3000)
        for t in tried:
            assert mask[t] == (automaton.advance(state, t) is not None), (prefix, words[t])
    assert refused > 0
