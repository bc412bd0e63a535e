"""Duplicate keys refused by the key tracker (structgen.constraints.json_keys), checked against
independent oracles.

1. The tracker alone: `feed` refuses a text exactly when `json.loads` with a pairs hook sees a
   repeated key in some object (hypothesis: random pair lists, random escapes and splits).
2. Masks of small finite schemas in any property order (and schema order with additional
   keys): the allowed tokens after a prefix are exactly the tokens t such that prefix + bytes(t)
   is a prefix of some valid document — the documents enumerated from candidate values filtered
   by jsonschema, written in every key order the setting allows — and EOS exactly at complete
   ones. Every reachable state's completion is a valid document without repeated keys, and its
   forced bytes start every valid continuation.
3. Compilation: more than 12 properties in any order compile (subsets of required keys only),
   minProperties counts distinct additional keys, and what stays refused is named.
   Random walks over the masks never get stuck, and their completions are valid.
4. SmolLM2 writes a 16-property any-order object, and one with a budget too tight for the
   minProperties it must reach: both validate and repeat no key.
"""
from __future__ import annotations

import itertools
import json
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_json_schema import canonical_dumps, spelling_units, spells_prefix, valid

from structgen import JsonSchema, UnsupportedSchemaError, generate
from structgen.constraints.json_keys import (KEY, KESC, KSTR, TRACK_START, VALUE, VESC, VSTR,
                                             _local_end, feed)


# --- 1. the tracker ------------------------------------------------------------------------

def _has_repeat(text: str) -> bool:
    repeated = False

    def hook(pairs: list) -> dict:
        nonlocal repeated
        keys = [k for k, _ in pairs]
        repeated |= len(keys) != len(set(keys))
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return repeated


def _spell_key(key: str, rng: random.Random) -> str:
    """A JSON string for `key`, each character literal or \\u-escaped at random."""
    out = []
    for ch in key:
        escaped = json.dumps(ch, ensure_ascii=False)[1:-1]
        out.append(f"\\u{ord(ch):04{'x' if rng.random() < 0.5 else 'X'}}"
                   if rng.random() < 0.4 else escaped)
    return '"' + "".join(out) + '"'


def _write(value: Any, rng: random.Random) -> str:
    """JSON text of nested pair lists (("obj", pairs) / lists / scalars), keys spelled at random."""
    if isinstance(value, tuple):
        body = ",".join(f"{_spell_key(k, rng)}:{_write(v, rng)}" for k, v in value[1])
        return "{" + body + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_write(v, rng) for v in value) + "]"
    return json.dumps(value)


KEYS = st.sampled_from(["a", "b", "é", "a\"", "\\", "{,}", ""])
SCALARS = st.one_of(st.none(), st.integers(-5, 5), st.sampled_from(["x", "a", "}\",{", "\\\""]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.tuples(st.just("obj"), st.lists(st.tuples(KEYS, inner), max_size=4))), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(VALUES, st.integers(0, 2**32), st.lists(st.integers(1, 7), max_size=40))
def test_tracker_refuses_exactly_repeated_keys(value, seed, cuts):
    text = _write(value, random.Random(seed))
    data = text.encode()
    track, i = TRACK_START, 0
    for n in cuts + [len(data)]:  # fed in random chunks: the result must not depend on them
        if track is None or i >= len(data):
            break
        track = feed(track, data[i : i + n])
        i += n
    assert (track is None) == _has_repeat(text), text
    if track is not None:
        assert track == (TRACK_START[0], 0, b"")  # back at the top level, outside strings


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet='ab"\\/\n\x01é😀', max_size=4), min_size=1, max_size=5),
       st.lists(st.text(alphabet='ab"\\/\n\x01é😀u0123456789ABCDEFabcdef', max_size=6),
                max_size=6))
def test_keys_dfa_walks_like_the_keys_string_dfa(keys, probes):
    """The tracker's sparse keys DFA reads exactly the byte prefixes of the keys' spellings, and
    accepts exactly their complete spellings (oracle: `json_string_dfa(literals=keys)`)."""
    from structgen.automata.bytedfa import DEAD
    from structgen.constraints.json_keys import _KeysDFA
    from structgen.schema.lexemes import json_string_dfa

    kd, dfa = _KeysDFA(frozenset(keys)), json_string_dfa(literals=keys)
    after_quote = dfa.rows[dfa.initial][0x22]
    texts = [json.dumps(k)[1:] for k in keys] + [json.dumps(k, ensure_ascii=False)[1:] for k in keys]
    texts += [p + '"' for p in probes] + probes
    for text in texts:
        data = text.encode()
        for cut in range(len(data) + 1):
            q, d = kd.state_of(data[:cut]), dfa.walk(after_quote, data[:cut])
            assert (q == DEAD) == (d == DEAD), (keys, data[:cut])
            if d != DEAD:
                assert kd.alive_bytes(q) == {b for b in range(256) if dfa.rows[d][b] != DEAD}
                assert kd.accepts(q) == bool(dfa.accepting[d])
                assert [b for b, _ in kd.moves(q)] == sorted(kd.alive_bytes(q))
    assert kd.row(kd.pre)[0x22] == kd.after_quote == kd.state_of(b"")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet='ab"\\/\né😀', max_size=4), min_size=1, max_size=6, unique=True))
def test_keys_dfa_grown_one_key_at_a_time_equals_built_at_once(keys):
    """`with_key` (how an object's keys DFA grows) gives the language of the whole set built
    at once: the same live prefixes, bytes and accepting prefixes on every key's spellings."""
    from structgen.automata.bytedfa import DEAD
    from structgen.constraints.json_keys import _KeysDFA

    grown = _KeysDFA(frozenset(keys[:1]))
    for key in keys[1:]:
        before = grown
        grown = grown.with_key(key)
        assert before.keys == frozenset(keys[: keys.index(key)])  # copy-on-write
    whole = _KeysDFA(frozenset(keys))
    assert grown.keys == whole.keys
    probes = [json.dumps(k)[1:] for k in keys] + [json.dumps(k, ensure_ascii=False)[1:] for k in keys]
    probes += [json.dumps(k + "a")[1:] for k in keys] + [json.dumps(k[:-1])[1:] for k in keys if k]
    for text in probes:
        data = text.encode()
        for cut in range(len(data) + 1):
            q1, q2 = grown.state_of(data[:cut]), whole.state_of(data[:cut])
            assert (q1 == DEAD) == (q2 == DEAD), (keys, data[:cut])
            if q1 != DEAD:
                assert grown.alive_bytes(q1) == whole.alive_bytes(q2)
                assert grown.accepts(q1) == whole.accepts(q2)


# --- 2. masks against enumerated documents -------------------------------------------------

ATOMS = [None, True, False, 1, "x"]


def _documents(schema: dict, keys: list[str], order: str, max_keys: int) -> list[Any]:
    """Valid values of `schema` over objects with keys from `keys` (values from ATOMS, or one
    level of nesting when the schema is an array of such objects), each as one dict per
    allowed key order."""
    dicts = [dict(zip(ks, vs)) for n in range(max_keys + 1)
             for ks in itertools.combinations(keys, n)
             for vs in itertools.product(ATOMS, repeat=n)]
    named = list(schema.get("properties", {}))
    out = []
    for d in dicts:
        if not valid(schema, d):
            continue
        if order == "any":
            out += [dict((k, d[k]) for k in p) for p in itertools.permutations(d)]
        else:  # schema order: named keys in schema order, then additional keys in any order
            first = [k for k in named if k in d]
            out += [dict((k, d[k]) for k in first + list(p))
                    for p in itertools.permutations([k for k in d if k not in named])]
    return out


ANY_ORDER = [
    ("required-and-optional", {
        "type": "object", "properties": {"a": {"enum": [1, None]}, "b": {"enum": [None, "x"]},
                                         "c": {"type": "boolean"}},
        "required": ["a"], "additionalProperties": False}, ["a", "b", "c"], 3),
    ("shared-prefixes", {  # "na" present: only "nam"… continue it
        "type": "object", "properties": {"na": {"type": "null"}, "nam": {"type": "null"},
                                         "name": {"type": "null"}},
        "minProperties": 2, "additionalProperties": False}, ["na", "nam", "name"], 3),
    ("finite-additional", {  # additional keys x1, x2: minProperties needs both with "a"
        "type": "object", "properties": {"a": {"type": "null"}},
        "patternProperties": {"^x[12]$": {"type": "boolean"}}, "additionalProperties": False,
        "minProperties": 2, "maxProperties": 3}, ["a", "x1", "x2", "x3"], 3),
    ("names-enum", {  # propertyNames: every key one of three, any of them additional
        "type": "object", "propertyNames": {"enum": ["p", "q", "r"]},
        "additionalProperties": {"const": 1}, "minProperties": 2}, ["p", "q", "r", "s"], 3),
    ("discriminated", {"anyOf": [  # the value of "t" picks the keys that may follow
        {"type": "object", "properties": {"t": {"const": 1}, "a": {"enum": [None, "x"]},
                                          "b": {"type": "boolean"}},
         "required": ["t"], "additionalProperties": False},
        {"type": "object", "properties": {"t": {"const": "x"}, "a": {"const": True}},
         "required": ["t"], "additionalProperties": False}]}, ["t", "a", "b"], 3),
]


def _oracle(texts: set[bytes]) -> tuple[set[bytes], set[bytes]]:
    prefixes = {t[:i] for t in texts for i in range(len(t) + 1)}
    return prefixes, texts


def _check_masks(automaton: Any, vocab: Any, texts: set[bytes], rng: random.Random,
                 n_prefixes: int) -> None:
    prefixes, complete = _oracle(texts)
    eos = set(vocab.eos_ids)
    contents = [(i, b) for i, b in enumerate(vocab.token_bytes) if b and i not in vocab.special_ids]
    for prefix in rng.sample(sorted(prefixes), min(n_prefixes, len(prefixes))):
        state = automaton._advance_bytes(automaton.start, prefix)
        assert state is not None, prefix
        allowed = set(automaton.allowed_ids(state).tolist())
        mask = automaton.mask(state)
        assert set(mask.nonzero().flatten().tolist()) == allowed
        assert bool(allowed & eos) == (prefix in complete), prefix
        expected = {i for i, b in contents if prefix + b in prefixes}
        assert allowed - eos == expected, (prefix, sorted(
            vocab.token_bytes[i] for i in (allowed - eos) ^ expected)[:10])
        for i in rng.sample(sorted(expected), min(5, len(expected))):  # advance agrees
            assert automaton.advance(state, i) is not None
        done = prefix + (automaton.completion_bytes(state) or b"")
        assert done in complete, (prefix, done)
        forced = automaton.forced_bytes(state)
        assert all(t.startswith(prefix + forced) for t in complete if t.startswith(prefix))


@pytest.mark.model
@pytest.mark.parametrize("name,schema,keys,max_keys", ANY_ORDER, ids=[c[0] for c in ANY_ORDER])
def test_any_order_masks_match_documents(name, schema, keys, max_keys, smollm2_vocab):
    values = _documents(schema, keys, "any", max_keys)
    assert values
    texts = {canonical_dumps(v).encode() for v in values}
    automaton = JsonSchema(schema, property_order="any").compile(smollm2_vocab)
    _check_masks(automaton, smollm2_vocab, texts, random.Random(name), 60)
    nested = {"type": "array", "items": schema, "maxItems": 2}  # objects side by side
    texts = {b"[]"} | {canonical_dumps([v]).encode() for v in values} | {
        canonical_dumps([u, v]).encode() for u in values for v in values}
    automaton = JsonSchema(nested, property_order="any").compile(smollm2_vocab)
    _check_masks(automaton, smollm2_vocab, texts, random.Random(name), 30)


def _spaced(text: str) -> set[bytes]:
    """Every spelling of a compact JSON text with one optional space at each place the
    grammar allows whitespace (either side of punctuation, both ends)."""
    gaps, in_string, escaped = {0, len(text)}, False, False
    for i, ch in enumerate(text):
        if in_string:
            in_string = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
        elif ch == '"':
            in_string = True
        elif ch in "{}[],:":
            gaps |= {i, i + 1}
    gaps_sorted = sorted(gaps)
    out = set()
    for choice in itertools.product((False, True), repeat=len(gaps_sorted)):
        parts, last = [], 0
        for gap, space in zip(gaps_sorted, choice):
            parts.append(text[last:gap] + (" " if space else ""))
            last = gap
        out.add(("".join(parts) + text[last:]).encode())
    return out


@pytest.mark.model
def test_whitespace_after_commas_masks_match_documents(smollm2_vocab):
    """Whitespace runs between keys (one verdict per comma, whatever the whitespace)."""
    schema = {"type": "object", "properties": {"a": {"const": 1}, "ab": {"const": True}},
              "additionalProperties": False}  # after both keys, no comma whatever the spaces
    values = _documents(schema, ["a", "ab"], "any", 2)
    texts = set().union(*(_spaced(canonical_dumps(v)) for v in values))
    automaton = JsonSchema(schema, property_order="any", whitespace=" ").compile(smollm2_vocab)
    _check_masks(automaton, smollm2_vocab, texts, random.Random(2), 40)


@pytest.mark.model
def test_any_spelling_masks_match_documents(smollm2_vocab):
    """spelling='any': keys may be \\u-escaped, and an escaped repeat is still a repeat."""
    schema = {"type": "object", "properties": {"ab": {"const": None}, "b": {"const": True}},
              "additionalProperties": False}
    values = _documents(schema, ["ab", "b"], "any", 2) + [{}]
    units = [spelling_units(v) for v in values]
    automaton = JsonSchema(schema, property_order="any", spelling="any").compile(smollm2_vocab)
    vocab = smollm2_vocab
    eos = set(vocab.eos_ids)
    rng = random.Random(0)
    contents = [i for i, b in enumerate(vocab.token_bytes) if b and i not in vocab.special_ids]
    for _ in range(25):
        value = rng.choice(values)
        text = _write(("obj", list(value.items())), rng).encode()
        prefix = text[: rng.randrange(len(text) + 1)]
        state = automaton._advance_bytes(automaton.start, prefix)
        assert state is not None, prefix
        allowed = set(automaton.allowed_ids(state).tolist())
        assert bool(allowed & eos) == any(spells_prefix(prefix, u)[1] for u in units)
        for t in set(rng.sample(contents, 2000)) | (allowed - eos):
            expected = any(spells_prefix(prefix + vocab.token_bytes[t], u)[0] for u in units)
            assert (t in allowed) == expected, (prefix, vocab.token_bytes[t])
    for text in (b'{"ab":null,"\\u0061b":null}', b'{"b":true,"\\u0062":true}',
                 b'{"a\\u0062":null,"ab":null}'):
        assert automaton._advance_bytes(automaton.start, text) is None


@pytest.mark.model
def test_schema_order_additional_keys_do_not_repeat(smollm2_vocab):
    schema = {"type": "object", "properties": {"a": {"type": "null"}},
              "propertyNames": {"enum": ["a", "p", "q"]}, "additionalProperties": {"const": 1},
              "minProperties": 2}
    values = _documents(schema, ["a", "p", "q"], "schema", 3)
    texts = {canonical_dumps(v).encode() for v in values}
    automaton = JsonSchema(schema).compile(smollm2_vocab)
    _check_masks(automaton, smollm2_vocab, texts, random.Random(1), 40)
    assert automaton._advance_bytes(automaton.start, b'{"p":1,"p":1}') is None


RANDOM_WALKS = [
    {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 3},
    {"type": "object", "properties": {"na": {"type": "null"}, "name": {"type": "null"}},
     "patternProperties": {"^n[a-c]?$": {"type": "boolean"}}, "additionalProperties": False,
     "minProperties": 3},
    {"type": "array", "items": {"type": "object", "properties": {
        "id": {"type": "integer"}, "tags": {"type": "object", "propertyNames": {"maxLength": 1},
                                            "additionalProperties": {"const": 0}}},
        "required": ["id"]}},
]


@pytest.mark.model
@pytest.mark.parametrize("index", range(len(RANDOM_WALKS)))
def test_random_walks_never_get_stuck(index, smollm2_vocab):
    """Tokens drawn at random from every mask: the state always allows something, and from
    any point the completion is a valid document with no repeated key."""
    schema = RANDOM_WALKS[index]
    vocab = smollm2_vocab
    eos = set(vocab.eos_ids)
    for order in ("any", "schema"):
        automaton = JsonSchema(schema, property_order=order).compile(vocab)
        rng = random.Random(index)
        for _ in range(6):
            state, text = automaton.start, b""
            for _ in range(40):
                ids = [i for i in automaton.allowed_ids(state).tolist() if i not in eos]
                if automaton.is_accepting(state) and (not ids or rng.random() < 0.2):
                    break
                assert ids, text  # live: something other than EOS when not accepting
                tok = rng.choice(ids)
                state = automaton.advance(state, tok)
                assert state is not None
                text += vocab.token_bytes[tok]
            done = text + automaton.completion_bytes(state)
            assert valid(schema, json.loads(done)) and not _has_repeat(done.decode()), done
            assert automaton.tokens_to_complete(state) is not None


# --- 3. compilation ------------------------------------------------------------------------

def _wide(n: int, required: int) -> dict:
    return {"type": "object", "properties": {f"k{i:02d}": {"type": "integer"} for i in range(n)},
            "required": [f"k{i:02d}" for i in range(required)], "additionalProperties": False}


@pytest.mark.model
def test_many_properties_in_any_order(smollm2_vocab):
    schema = _wide(30, 3)
    constraint = JsonSchema(schema, property_order="any")  # 30 keys: 2^30 key sets before
    automaton = constraint.compile(smollm2_vocab)
    rng = random.Random(0)
    for _ in range(20):
        keys = [f"k{i:02d}" for i in rng.sample(range(30), rng.randrange(31))]
        value = {k: 1 for k in keys}
        text = json.dumps(value, separators=(",", ":")).encode()
        state = automaton._advance_bytes(automaton.start, text)
        assert (state is not None and automaton.is_accepting(state)) == valid(schema, value)
        if keys:  # the same object with one key written twice
            twice = text[:-1] + b',"' + keys[0].encode() + b'":1}'
            assert automaton._advance_bytes(automaton.start, twice) is None
    full = "{" + ",".join(f'"k{i:02d}":{i}' for i in range(30))
    state = automaton._advance_bytes(automaton.start, full.encode())
    assert automaton._advance_bytes(state, b",") is None  # every key present: only "}"
    assert automaton.completion_bytes(state) == b"}"


def test_required_subsets_still_bounded():
    with pytest.raises(UnsupportedSchemaError) as e:
        JsonSchema(_wide(14, 13), property_order="any")
    assert e.value.keyword == "properties"


@pytest.mark.model
def test_min_properties_counts_distinct_additional_keys(smollm2_vocab):
    schema = {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 3}
    for order in ("schema", "any"):
        automaton = JsonSchema(schema, property_order=order).compile(smollm2_vocab)
        state = automaton._advance_bytes(automaton.start, b'{"a":1,"b":2')
        assert automaton._advance_bytes(state, b"}") is None
        assert automaton._advance_bytes(state, b',"a"') is None
        done = b'{"a":1,"b":2' + automaton.completion_bytes(state)
        value = json.loads(done)
        assert valid(schema, value) and not _has_repeat(done.decode())
    few = {"type": "object", "properties": {"a": {}}, "additionalProperties": False,
           "minProperties": 2}  # only one key can exist: no object, so no document
    automaton = JsonSchema({"anyOf": [few, {"type": "null"}]}).compile(smollm2_vocab)
    assert automaton._advance_bytes(automaton.start, b"{") is None


# --- 4. generation -------------------------------------------------------------------------

@pytest.mark.model
@pytest.mark.usefixtures("one_thread")
def test_generation_budget_needs_distinct_keys(smollm2):
    """A tight budget with minProperties over additional keys: the completion picks fresh keys."""
    schema = {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 4}
    result = generate(smollm2, "Some JSON:", JsonSchema(schema, property_order="any"),
                      max_tokens=20)
    assert result.finished, result.text
    assert valid(schema, result.value) and not _has_repeat(result.text), result.text


@pytest.mark.model
@pytest.mark.usefixtures("one_thread")
def test_generation_many_properties_any_order(smollm2):
    fields = ["name", "city", "country", "street", "zip", "phone", "email", "age", "height",
              "weight", "job", "company", "hobby", "pet", "color", "food"]
    schema = {"type": "object",
              "properties": {f: ({"type": "integer", "minimum": 0, "maximum": 300}
                                 if f in ("age", "height", "weight")
                                 else {"type": "string", "maxLength": 12}) for f in fields},
              "required": ["name", "age"], "minProperties": 6, "additionalProperties": False}
    constraint = JsonSchema(schema, property_order="any")
    for prompt in ("A person as JSON.", "JSON profile of a chef in Lyon, many fields:"):
        result = generate(smollm2, [{"role": "user", "content": prompt}], constraint,
                          max_tokens=120)
        assert result.finished, result.text
        assert valid(schema, result.value), result.text
        assert not _has_repeat(result.text), result.text


@pytest.mark.model
@pytest.mark.parametrize("order", ["any", "schema"])
def test_masks_agree_with_advance_at_key_positions(order, smollm2_vocab):
    """At key positions and after them, the mask allows exactly the tokens `advance` takes —
    including tokens that leave an inner object into a key position of the outer one (`},`
    after `"b":{` when "a" and "b" are the only keys and both present)."""
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"a": {"type": "integer"}, "b": {"type": "object"},
                             "ab": {"type": "string"}}}
    automaton = JsonSchema(schema, property_order=order, whitespace="flexible",
                           spelling="any").compile(smollm2_vocab)
    marked = [i for i, b in enumerate(smollm2_vocab.token_bytes)
              if b and (b'"' in b or b"," in b or b"}" in b)]
    for prefix in (b'{"a":1,"ab":"x","b":{', b'{"a":1,"ab":"x","b":{}', b'{"a":1,"ab":"x","b":{"a":1',
                   b'{"ab":"x","a":1,', b'{"ab":"x","a":1, "', b'{"ab":"x","a":1,"a', b'{"a":1,"ab',
                   b'{"a":1,"\\u0061', b'{"b":{},"a":2'):
        state = automaton._advance_bytes(automaton.start, prefix)
        if state is None:  # e.g. `"a` when "a" and "ab" are both present: nothing fresh
            continue
        mask = automaton.mask(state)
        wrong = [smollm2_vocab.token_bytes[i] for i in marked
                 if bool(mask[i]) != (automaton.advance(state, i) is not None)]
        assert not wrong, (prefix, wrong[:10])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(list(b'ab "\\,:{}[]')), min_size=1, max_size=8).map(bytes),
       st.sampled_from([VALUE, VSTR, VESC, KEY, KSTR, KESC]), st.booleans(), st.booleans())
def test_local_end_is_where_feed_ends_whatever_the_tracker_state(data, mode, in_array, keys):
    """Tokens the masks take without a tracker step (`_local_end` not None) end where
    `_local_end` says from any tracker state in that mode and container, and never repeat a
    key."""
    in_object = not in_array or mode in (KEY, KSTR, KESC)
    closing = mode in (KSTR, KESC)
    end = _local_end(data, mode, closing, in_object)
    if end is None:
        return
    if in_object:
        stack = ((), frozenset({"z"}) if keys else frozenset())  # "z": never spelled here
    else:
        stack = (((), frozenset({"z"})), None) if keys else ()  # an array, or the top level
    partial = {KSTR: b"a", KESC: b"a\\"}.get(mode, b"")
    try:
        got = feed((stack, mode, partial), data)
    except ValueError:  # a key with an invalid escape: not JSON, no token reads it there
        return
    assert got is not None, (data, mode)
    assert (got[1], len(got[2])) == end, (data, mode, got, end)

BRANCHES = [  # (value that leaves a fresh key, value that leaves none, prefix before them)
    ("x", "x.", b'{"a":1,"t":"x'), ("x.", "x", b'{"a":1,"t":"x')]  # tokens `",` and `.",`


@pytest.mark.model
@pytest.mark.parametrize("fresh,full,prefix", BRANCHES)
def test_comma_verdicts_depend_on_what_precedes_the_comma(fresh, full, prefix, smollm2_vocab):
    """Tokens that end after the same comma share a verdict only when they differ in trailing
    whitespace: `",` and `.",` close different values, and so different branches — one with a
    key still to come, one with every key present (then the comma strands the object)."""
    branch = {"type": "object", "required": ["t"], "additionalProperties": False}
    schema = {"anyOf": [
        {**branch, "properties": {"t": {"const": fresh}, "a": {"const": 1}, "b": {"const": 1}}},
        {**branch, "properties": {"t": {"const": full}, "a": {"const": 1}}}]}
    automaton = JsonSchema(schema, property_order="any").compile(smollm2_vocab)
    state = automaton._advance_bytes(automaton.start, prefix)
    mask = automaton.mask(state)
    grammar = automaton.grammar.mask(state[0])
    commas = [i for i, b in enumerate(smollm2_vocab.token_bytes) if b and b"," in b and grammar[i]]
    taken = {i for i in commas if automaton.advance(state, i) is not None}
    assert taken and len(taken) < len(commas)  # both branches' commas are among them
    wrong = [smollm2_vocab.token_bytes[i] for i in commas if bool(mask[i]) != (i in taken)]
    assert not wrong, wrong[:10]


@pytest.mark.parametrize("kwargs", [{}, {"literals": ["a", "ab", "b"]}, {"exclude": ["a", "ab"]},
                                    {"max_length": 3}, {"pattern": "^x+$"},
                                    {"literals": ["k"], "canonical": True}])
def test_endless_states_are_those_with_infinitely_many_continuations(kwargs, smollm2_vocab):
    """A key lexeme in an endless state can always spell a key that is not present (the
    tracker's shortcut): checked against the pumping bound — a state has infinitely many
    accepted continuations iff it accepts one of length n..2n-1 (n states)."""
    import numpy as np

    from structgen.constraints.json_keys import KeyTrackingAutomaton
    from structgen.schema.lexemes import json_string_dfa

    dfa = json_string_dfa(**kwargs)
    automaton = KeyTrackingAutomaton(JsonSchema({}).compile(smollm2_vocab).grammar, [dfa])
    n = dfa.n_states
    succ = [set(row[row >= 0].tolist()) for row in dfa.transitions]
    expected = set()
    for s in range(n):
        here = {s}
        for length in range(1, 2 * n):
            here = set().union(*(succ[q] for q in here))
            if length >= n and any(dfa.accepting[q] for q in here):
                expected.add(s)
                break
    endless = automaton._endless(0)
    assert {s for s in range(n) if s in endless} == expected
    assert bool(endless) == bool(expected) and -1 not in endless
    assert expected or kwargs.get("literals") or "max_length" in kwargs


def test_endless_states_do_not_keep_their_dfa_alive() -> None:
    """`_ENDLESS` is keyed weakly by DFA (key DFAs come and go with schemas): its values must
    not reference their key, or no entry would ever go."""
    import gc
    import weakref

    from structgen.automata.bytedfa import dfa_product
    from structgen.automata.regex import regex_to_dfa
    from structgen.constraints.json_keys import _ENDLESS, EndlessStates as _Endless

    dfa = dfa_product(regex_to_dfa(r'"[a-z]*"'), regex_to_dfa(r'"(ab|cd)"'), "andnot")
    _ENDLESS[dfa] = _Endless(dfa)
    assert _ENDLESS[dfa] and dfa.walk(dfa.initial, b'"a') in _ENDLESS[dfa]
    alive = weakref.ref(dfa)
    del dfa
    gc.collect()
    assert alive() is None


@pytest.mark.model
@pytest.mark.parametrize("name", ["shared-prefixes", "names-enum"])
def test_any_order_masks_match_documents_gemma(name, gemma_vocab):
    """The same oracle on Gemma-3's 262k tokens (many JSON-shaped tokens such as `":1,"`
    that close a key and open the next; schema grammars skip the free lexer there)."""
    _, schema, keys, max_keys = next(c for c in ANY_ORDER if c[0] == name)
    texts = {canonical_dumps(v).encode() for v in _documents(schema, keys, "any", max_keys)}
    automaton = JsonSchema(schema, property_order="any").compile(gemma_vocab)
    _check_masks(automaton, gemma_vocab, texts, random.Random(name), 25)


@pytest.mark.model
@pytest.mark.parametrize("whitespace", ["flexible", " ", "[ \t]{1,3}", "\n {2,4}", "( |\n\n)+"])
def test_whitespace_before_keys_searched_once(whitespace, smollm2_vocab):
    """Witnesses before a key try the quote only after whitespace that leaves a narrower state
    (`GrammarAutomaton.narrower`): masks equal those of a search down every whitespace run,
    in objects with a fresh key left and with none, and the search is a fraction as long."""
    schema = {"type": "object", "properties": {"a": {"const": 1}, "ab": {"const": True},
                                               "c": {"type": "object", "properties": {
                                                   "a": {"const": 2}}}},
              "additionalProperties": False}
    narrow = JsonSchema(schema, property_order="any", whitespace=whitespace).compile(smollm2_vocab)
    full = JsonSchema(schema, property_order="any", whitespace=whitespace)._build(smollm2_vocab)
    full.grammar.narrower = lambda h, g, skip: False
    texts = [b'{', b'{"a":1,', b'{"a":1,"ab":true', b'{"c":{"a":2', b'{"c":{', b'{"ab":true,"c":{}']
    spaces = {"flexible": [b"", b" ", b"\n  "], " ": [b"", b" "], "[ \t]{1,3}": [b"", b" \t"],
              "\n {2,4}": [b"", b"\n  "], "( |\n\n)+": [b"", b"\n\n "]}[whitespace]
    narrowed = 0
    for text in texts:
        for space in spaces:
            a = narrow._advance_bytes(narrow.start, text + space)
            b = full._advance_bytes(full.start, text + space)
            assert (a is None) == (b is None), text + space
            if a is not None:
                assert np.array_equal(narrow.allowed_ids(a), full.allowed_ids(b)), text + space
                narrowed += 1
    assert narrowed
    # A comma where every key its branch allows is present: the search finds no witness, and
    # without narrower states it tried every length of the whitespace run.
    branch = {"type": "object", "required": ["t"], "additionalProperties": False}
    schema = {"anyOf": [
        {**branch, "properties": {"t": {"const": "x"}, "a": {"const": 1}, "b": {"const": 1}}},
        {**branch, "properties": {"t": {"const": "x."}, "a": {"const": 1}}}]}
    narrow = JsonSchema(schema, property_order="any", whitespace=whitespace)._build(smollm2_vocab)
    full = JsonSchema(schema, property_order="any", whitespace=whitespace)._build(smollm2_vocab)
    full.grammar.narrower = lambda h, g, skip: False
    calls = {id(narrow): 0, id(full): 0}
    for automaton in (narrow, full):
        def counted(g, kd, seen, automaton=automaton, search=automaton._before_key):
            calls[id(automaton)] += 1
            return search(g, kd, seen)
        automaton._before_key = counted
    for text in (b'{"a":1,"t":"x.', b'{"a":1,"t":"x."', b'{"t":"x.","a":1'):
        a = narrow._advance_bytes(narrow.start, text)
        b = full._advance_bytes(full.start, text)
        assert np.array_equal(narrow.allowed_ids(a), full.allowed_ids(b)), text
    if whitespace == "flexible":  # 32-byte runs
        assert 4 * calls[id(narrow)] < calls[id(full)], calls
