"""JsonSchema: schema → grammar → token masks, checked against jsonschema and an independent
spelling oracle.

1. Acceptance: representative schemas × valid/invalid instances (hand-written plus mutations
   of them), fed through the automaton as bytes and through `Matcher` as SmolLM2 tokens: a text
   is accepted iff `Draft202012Validator` (with its format checker) says the value is valid —
   compact and flexible whitespace, schema and any property order.
2. Masks: for finite-language schemas, the allowed tokens at random prefixes are exactly the
   tokens t such that prefix + bytes(t) is a prefix of some JSON spelling (escapes included) of
   a valid value; EOS exactly at complete spellings. The oracle enumerates values and spells
   them itself — it shares nothing with the compiler.
3. SmolLM2 generates (greedy) outputs that finish and validate; a Pydantic model gives an
   instance.
4. Errors: invalid schemas, remote references, unsupported keywords with their pointers,
   lenient warnings, bad options.
"""
from __future__ import annotations

import copy
import itertools
import json
import random
from decimal import Decimal
from typing import Any, Iterator

import jsonschema
import pytest
import referencing

from structgen import (
    JsonSchema,
    Matcher,
    SchemaError,
    UnsupportedSchemaError,
    generate,
)

V = jsonschema.Draft202012Validator


def valid(schema: Any, value: Any) -> bool:
    return V(schema, format_checker=V.FORMAT_CHECKER).is_valid(value)


def accepts(constraint: JsonSchema, vocab: Any, text: str) -> bool:
    automaton = constraint.compile(vocab)
    state = automaton._advance_bytes(automaton.start, text.encode())
    return state is not None and automaton.is_accepting(state)


# --- 1. acceptance ------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
TREE = {
    "$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["value"], "additionalProperties": False}},
    "$ref": "#/$defs/node",
}
LINKED = {
    "$anchor": "list",
    "type": ["object", "null"],
    "properties": {"head": {"type": "boolean"}, "tail": {"$ref": "#list"}},
    "required": ["head", "tail"],
}
SHAPES = {
    "anyOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
         "required": ["kind", "r"]},
        {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "integer"}},
         "required": ["kind", "side"]},
        {"type": "null"},
    ],
}
ONE_OF = {
    "oneOf": [
        {"properties": {"t": {"const": 1}, "x": {"type": "string"}}, "required": ["t"]},
        {"properties": {"t": {"const": 2}, "y": {"type": "boolean"}}, "required": ["t"]},
    ],
    "type": "object",
}
RANGES = {
    "type": "array",
    "prefixItems": [{"type": "integer", "exclusiveMinimum": -3, "maximum": 7},
                    {"type": "number", "minimum": 0.5}],
    "items": {"type": "integer", "multipleOf": 5},
    "minItems": 1,
    "maxItems": 4,
}
PATTERNS = {
    "type": "object",
    "properties": {"id": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"}},
    "patternProperties": {"^x-": {"type": "integer"}},
    "additionalProperties": {"type": "string"},
    "propertyNames": {"maxLength": 6},
    "maxProperties": 3,
}
FORMATS = {
    "type": "object",
    "properties": {"day": {"type": "string", "format": "date"},
                   "ip": {"type": "string", "format": "ipv4"},
                   "id": {"type": "string", "format": "uuid"}},
}
ALL_OF = {
    "allOf": [
        {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0}},
         "required": ["a"]},
        {"properties": {"a": {"maximum": 10}, "b": {"type": "string"}}},
        {"not": {"required": ["c"]}},
    ],
}
CONDITIONAL = {
    "type": "object",
    "properties": {"country": {"enum": ["US", "FR"]}, "zip": {"type": "string"}},
    "required": ["country", "zip"],
    "if": {"properties": {"country": {"const": "US"}}},
    "then": {"properties": {"zip": {"pattern": "^[0-9]{5}$"}}},
    "else": {"properties": {"zip": {"pattern": "^[0-9]{2} ?[0-9]{3}$"}}},
}
CONTAINS = {
    "type": "array",
    "items": {"type": ["integer", "string"]},
    "contains": {"type": "string"},
    "minContains": 1,
    "maxContains": 2,
}
MISC = {
    "type": "object",
    "properties": {"flag": {"type": "boolean"}, "opt": {"type": ["string", "null"]},
                   "unique": {"type": "array", "items": {"enum": [1, 2, "x"]},
                              "uniqueItems": True},
                   "const": {"const": {"k": [1, "two", None]}}},
    "dependentRequired": {"flag": ["opt"]},
    "minProperties": 1,
}

CASES: list[tuple[str, dict, list[Any]]] = [
    ("person", PERSON, [
        {"name": "Ann", "age": 31}, {"name": "Bob", "age": 0, "email": "b@x.org", "tags": ["a"]},
        {"name": "Zoë", "age": 130, "tags": ["c", "c", "b"]}, {"name": "", "age": 1},
        {"name": "Ann"}, {"name": "Ann", "age": -1}, {"name": "Ann", "age": 1.5},
        {"name": "Ann", "age": 3, "email": "nope"}, {"name": "Ann", "age": 3, "x": 1},
        {"name": "waytoolongname", "age": 3}, {"name": "A", "age": 3, "tags": ["d"]},
        {"name": "A", "age": 3, "tags": ["a", "a", "a", "a"]}, [], None, "Ann",
    ]),
    ("tree", TREE, [
        {"value": 1}, {"value": 1, "children": []},
        {"value": 1, "children": [{"value": 2, "children": [{"value": 3}]}, {"value": 4}]},
        {"value": 1, "children": [{"children": []}]}, {"value": "1"}, {"value": 1, "x": 2},
        {"value": 1, "children": [{"value": 2, "children": [{"value": 2.5}]}]},
    ]),
    ("linked", LINKED, [
        None, {"head": True, "tail": None}, {"head": True, "tail": {"head": False, "tail": None}},
        {"head": True}, {"head": 1, "tail": None}, {"head": True, "tail": {"head": False}},
    ]),
    ("shapes", SHAPES, [
        {"kind": "circle", "r": 1.5}, {"kind": "square", "side": 2}, None,
        {"kind": "circle", "side": 2}, {"kind": "square", "side": 2.5}, {"kind": "tri"}, 3,
    ]),
    ("one_of", ONE_OF, [
        {"t": 1, "x": "s"}, {"t": 2, "y": True}, {"t": 1}, {"t": 3}, {"t": 1, "x": 1}, {},
        {"t": 2, "y": "no"},
    ]),
    ("ranges", RANGES, [
        [-2], [7, 0.5], [0, 3, 5, -10], [-3], [8], [1, 0.25], [1, 1, 3], [1, 1, 5, 5, 5], [],
        [1.5], [0, 100, 0],
    ]),
    ("patterns", PATTERNS, [
        {"id": "AB-123"}, {"id": "AB-123", "x-n": 3, "other": "s"}, {"x-a": 1, "x-b": 2},
        {"id": "ab-123"}, {"id": "AB-1234"}, {"x-n": "s"}, {"other": 1},
        {"longname": "s"}, {"a": "1", "b": "2", "c": "3", "d": "4"},
    ]),
    ("formats", FORMATS, [
        {"day": "2024-02-29"}, {"ip": "10.0.0.1", "id": "123e4567-e89b-12d3-a456-426614174000"},
        {"day": "2024-13-01"}, {"ip": "256.1.1.1"}, {"id": "xyz"}, {"day": 20240229},
    ]),
    ("all_of", ALL_OF, [
        {"a": 0}, {"a": 10, "b": "x"}, {"a": 11}, {"a": -1}, {"b": "x"}, {"a": 1, "c": 1},
        {"a": 1, "b": 2}, {"a": 5, "d": [1]},
    ]),
    ("conditional", CONDITIONAL, [
        {"country": "US", "zip": "12345"}, {"country": "FR", "zip": "75 001"},
        {"country": "US", "zip": "75 001"}, {"country": "FR", "zip": "1234"},
        {"country": "DE", "zip": "12345"},
    ]),
    ("contains", CONTAINS, [
        ["a"], [1, "a", 2, "b"], [], [1, 2], ["a", "b", "c"], [1.5, "a"],
    ]),
    ("misc", MISC, [
        {"flag": True, "opt": None}, {"opt": "s"}, {"unique": [1, "x", 2]},
        {"const": {"k": [1, "two", None]}}, {"const": {"k": [1.0, "two", None]}}, {},
        {"flag": True}, {"unique": [1, 1]}, {"unique": [1, 1.0]}, {"const": {"k": [1, "two"]}},
        {"unique": [3]},
    ]),
]


def mutations(value: Any, rng: random.Random, n: int) -> Iterator[Any]:
    """Small random edits of a value: a mix of valid and invalid instances for the oracle."""
    replacements = [None, True, 0, -7, 2.5, 1e3, "", "AB-123", "x", [], {}, [1], {"a": 1}]
    paths: list[tuple] = []

    def collect(v: Any, path: tuple) -> None:
        paths.append(path)
        if isinstance(v, dict):
            for k, x in v.items():
                collect(x, path + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                collect(x, path + (i,))

    collect(value, ())
    for _ in range(n):
        out = copy.deepcopy(value)
        path = rng.choice(paths)
        parent, key = None, None
        target = out
        for p in path:
            parent, key, target = target, p, target[p]
        op = rng.randrange(4)
        if op == 0 and parent is not None:
            del parent[key]
        elif op == 1 and isinstance(target, dict):
            target[rng.choice(["a", "b", "x-q", "name", "value", "zz"])] = rng.choice(replacements)
        elif op == 2 and isinstance(target, list):
            target.append(rng.choice(replacements + target))
        elif parent is not None:
            parent[key] = rng.choice(replacements)
        else:
            out = rng.choice(replacements)
        yield out


def reorder(value: Any) -> Any:
    """The same value with every object's keys reversed."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


def canonical_dumps(value: Any) -> str:
    """The one spelling `spelling="canonical"` accepts: compact, strings as json.dumps writes
    them without ASCII escapes, numbers in plain decimal (no exponent, no trailing zeros)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{canonical_dumps(k)}:{canonical_dumps(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_dumps(v) for v in value) + "]"
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.model
@pytest.mark.parametrize("name,schema,instances", CASES, ids=[c[0] for c in CASES])
def test_accepts_exactly_the_valid_instances(name, schema, instances, smollm2_vocab):
    rng = random.Random(name)
    pool = list(instances) + [m for v in instances for m in mutations(v, rng, 6)]
    compact = JsonSchema(schema, spelling="any")
    spaced_any = JsonSchema(schema, whitespace="flexible", property_order="any", spelling="any")
    canonical = JsonSchema(schema)  # the generation default: one spelling per value
    n_valid = 0
    for value in pool:
        ok = valid(schema, value)
        n_valid += ok
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        # schema order: instances are written in schema order, so valid ones must pass
        assert accepts(compact, smollm2_vocab, text) == ok, (text, ok)
        assert accepts(canonical, smollm2_vocab, canonical_dumps(value)) == ok, (value, ok)
        escaped = json.dumps(value, separators=(",", ":"))
        if escaped != canonical_dumps(value):  # \u escapes or float spellings: not canonical
            assert not accepts(canonical, smollm2_vocab, escaped)
        for spelled in (json.dumps(value), json.dumps(value, indent=2),
                        json.dumps(reorder(value))):
            assert accepts(spaced_any, smollm2_vocab, spelled) == ok, (spelled, ok)
        if not ok:  # never accepted in any spelling or order
            assert not accepts(compact, smollm2_vocab, json.dumps(reorder(value),
                                                                   separators=(",", ":")))
    assert 0 < n_valid < len(pool)  # the pool exercises both outcomes


@pytest.mark.model
def test_matcher_tokens(smollm2):
    """The harness path: tokenize json.dumps(instance) and feed tokens through Matcher."""
    for _, schema, instances in CASES[:6]:
        constraint = JsonSchema(schema, whitespace="flexible", property_order="any",
                                spelling="any")
        for value in instances:
            matcher = Matcher(constraint, smollm2.tokenizer)
            ids = smollm2.tokenizer.encode(json.dumps(value), add_special_tokens=False)
            fed = all(matcher.consume(i) for i in ids)
            assert (fed and matcher.is_accepting()) == valid(schema, value), value
            if fed:  # EOS allowed exactly at the end of a valid instance
                assert bool(matcher.mask()[sorted(smollm2.vocab.eos_ids)].any()) == valid(
                    schema, value)


# --- 2. masks against an independent spelling oracle --------------------------------------

def _string_units(s: str) -> list[set[bytes]]:
    """Each character of a JSON string body as the set of its spellings."""
    short = {'"': b'\\"', "\\": b"\\\\", "/": b"\\/", "\b": b"\\b", "\f": b"\\f", "\n": b"\\n",
             "\r": b"\\r", "\t": b"\\t"}
    units = []
    for ch in s:
        code = f"{ord(ch):04x}"
        alts = {b"\\u" + "".join(v).encode()
                for v in itertools.product(*[{c, c.upper()} for c in code])}
        if ch in short:
            alts.add(short[ch])
        if ch not in '"\\' and ord(ch) >= 0x20:
            alts.add(ch.encode())
        units.append(alts)
    return units


def spelling_units(value: Any) -> list[set[bytes]]:
    """A compact JSON spelling of `value` (keys in insertion order) as a sequence of units."""
    if isinstance(value, str):
        return [{b'"'}] + _string_units(value) + [{b'"'}]
    if isinstance(value, dict):
        out: list[set[bytes]] = [{b"{"}]
        for i, (k, v) in enumerate(value.items()):
            out += ([{b","}] if i else []) + spelling_units(k) + [{b":"}] + spelling_units(v)
        return out + [{b"}"}]
    if isinstance(value, list):
        out = [{b"["}]
        for i, v in enumerate(value):
            out += ([{b","}] if i else []) + spelling_units(v)
        return out + [{b"]"}]
    return [{json.dumps(value).encode()}]


def spells_prefix(data: bytes, units: list[set[bytes]]) -> tuple[bool, bool]:
    """(data is a prefix of some spelling, data is a whole spelling)."""
    positions = {0}
    for unit in units:
        nxt = set()
        for p in positions:
            rest = data[p:]
            for alt in unit:
                if len(rest) < len(alt) and alt.startswith(rest):
                    return True, False
                if rest.startswith(alt):
                    nxt.add(p + len(alt))
        positions = nxt
        if not positions:
            return False, False
    return len(data) in positions, len(data) in positions


FINITE = [
    {"type": "object", "properties": {"a": {"enum": ["x", "yé"]}, "b": {"type": "boolean"},
                                      "c": {"type": "null"}},
     "required": ["a"], "additionalProperties": False},
    {"type": "array", "items": {"enum": ["p", "q/r", True]}, "maxItems": 2},
    {"anyOf": [{"const": {"k": "v"}}, {"type": "array", "prefixItems": [{"const": "\n"}],
                                       "items": False}]},
]


def finite_values(schema: dict) -> list[Any]:
    """All valid values of the FINITE schemas (enumerated, then filtered by jsonschema)."""
    atoms = ["x", "yé", "p", "q/r", True, False, None, "v", "\n"]
    candidates: list[Any] = list(atoms)
    for n in range(3):
        candidates += [list(t) for t in itertools.product(atoms, repeat=n)]
    for keys in (["a"], ["a", "b"], ["a", "c"], ["a", "b", "c"], ["k"]):
        for vals in itertools.product(atoms, repeat=len(keys)):
            candidates.append(dict(zip(keys, vals)))
    return [v for v in candidates if valid(schema, v)]


@pytest.mark.model
@pytest.mark.parametrize("index", range(len(FINITE)))
def test_masks_match_spelling_oracle(index, smollm2_vocab):
    schema = FINITE[index]
    values = finite_values(schema)
    assert values
    all_units = [spelling_units(v) for v in values]
    automaton = JsonSchema(schema, spelling="any").compile(smollm2_vocab)
    vocab = smollm2_vocab
    rng = random.Random(index)
    eos = set(vocab.eos_ids)
    contents = [i for i, b in enumerate(vocab.token_bytes) if b and i not in vocab.special_ids]
    for _ in range(8):
        value = rng.choice(values)
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=rng.random() < 0.5).encode()
        prefix = text[: rng.randrange(len(text) + 1)]
        state = automaton._advance_bytes(automaton.start, prefix)
        assert state is not None, prefix
        allowed = set(automaton.allowed_ids(state).tolist())
        complete = any(spells_prefix(prefix, u)[1] for u in all_units)
        assert bool(allowed & eos) == complete, prefix
        sample = set(rng.sample(contents, 3000)) | (allowed - eos)
        for t in sample:
            data = prefix + vocab.token_bytes[t]
            expected = any(spells_prefix(data, u)[0] for u in all_units)
            assert (t in allowed) == expected, (prefix, vocab.token_bytes[t])


# --- 3. generation ------------------------------------------------------------------------

@pytest.mark.model
def test_generation_validates(smollm2):
    schema = {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12},
        "population": {"type": "integer", "minimum": 0},
        "capital": {"type": "boolean"}},
        "required": ["city", "population", "capital"], "additionalProperties": False}
    result = generate(smollm2, [{"role": "user", "content": "Describe Paris as JSON."}],
                      JsonSchema(schema, whitespace="flexible"), max_tokens=40)
    assert result.finished, result.text
    assert valid(schema, result.value), result.text
    assert result.value == json.loads(result.text)


@pytest.mark.model
def test_generation_budget_still_valid(smollm2):
    """A budget far below what the model would like still ends in a valid document."""
    schema = {"type": "array", "items": {"enum": ["apple", "pear", "fig"]}, "minItems": 2}
    result = generate(smollm2, "A JSON list of fruits:", JsonSchema(schema), max_tokens=8)
    assert result.finished, result.text
    assert valid(schema, result.value)


@pytest.mark.model
def test_pydantic_model_gives_instance(smollm2):
    import pydantic

    class Pet(pydantic.BaseModel):
        name: str
        legs: int

    result = generate(smollm2, [{"role": "user", "content": "A pet as JSON."}], JsonSchema(Pet),
                      max_tokens=30)
    assert result.finished, result.text
    assert isinstance(result.value, Pet)


# --- 4. errors and options ----------------------------------------------------------------

def test_invalid_schema_names_pointer():
    with pytest.raises(SchemaError) as e:
        JsonSchema({"properties": {"a": {"type": "strin"}}})
    assert e.value.pointer == "/properties/a/type"
    assert "strin" in str(e.value)
    with pytest.raises(SchemaError):
        JsonSchema('{"type": ')  # not JSON
    with pytest.raises(SchemaError, match="unresolvable"):
        JsonSchema({"$ref": "#/$defs/missing"})


def test_remote_ref_needs_registry():
    remote = {"$ref": "https://example.com/thing.json"}
    with pytest.raises(UnsupportedSchemaError) as e:
        JsonSchema(remote)
    assert e.value.keyword == "$ref" and e.value.pointer == "/$ref"
    thing = referencing.Resource.from_contents(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "integer"})
    registry = referencing.Registry().with_resource("https://example.com/thing.json", thing)
    constraint = JsonSchema(remote, registry=registry)
    assert not constraint.warnings


@pytest.mark.model
def test_unsupported_keyword_and_lenient(smollm2_vocab):
    schema = {"type": "object", "properties": {
        "xs": {"type": "array", "items": {"type": "integer", "maximum": 99},
               "uniqueItems": True}}}
    with pytest.raises(UnsupportedSchemaError) as e:
        JsonSchema(schema)
    assert e.value.keyword == "uniqueItems" and e.value.pointer == "/properties/xs"
    lenient = JsonSchema(schema, lenient=True)
    assert len(lenient.warnings) == 1
    assert "uniqueItems" in lenient.warnings[0] and "/properties/xs" in lenient.warnings[0]
    assert accepts(lenient, smollm2_vocab, '{"xs":[1,1]}')  # dropped: duplicates allowed
    assert not accepts(lenient, smollm2_vocab, '{"xs":[{}]}')  # the rest still holds
    overlap = {"oneOf": [{"type": "string"}, {"type": "string", "minLength": 2}]}
    assert JsonSchema(overlap).compiled  # complements of string parts are exact
    with pytest.raises(UnsupportedSchemaError) as e:
        JsonSchema({"$defs": {"o": {"oneOf": [{"type": "object"},
                                              {"patternProperties": {"a": {"type": "null"}}}]}},
                    "$ref": "#/$defs/o"})
    assert e.value.keyword == "oneOf" and e.value.pointer == "/$defs/o/oneOf"


def test_options_validated():
    with pytest.raises(ValueError, match="empty string"):
        JsonSchema({}, whitespace=" *")
    with pytest.raises(ValueError, match="non-whitespace"):
        JsonSchema({}, whitespace="[ a]")
    with pytest.raises(ValueError, match="property_order"):
        JsonSchema({}, property_order="sorted")


@pytest.mark.model
def test_format_assertion_off(smollm2_vocab):
    schema = {"type": "string", "format": "date"}
    assert not accepts(JsonSchema(schema), smollm2_vocab, '"yesterday"')
    assert accepts(JsonSchema(schema, format_assertion=False), smollm2_vocab, '"yesterday"')


@pytest.mark.model
def test_whitespace_is_bounded(smollm2_vocab):
    constraint = JsonSchema({"type": "array"}, whitespace="flexible")
    assert accepts(constraint, smollm2_vocab, "[" + " " * 32 + "]")
    assert not accepts(constraint, smollm2_vocab, "[" + " " * 33 + "]")
    custom = JsonSchema({"type": "array"}, whitespace=r"\n {0,4}")
    assert accepts(custom, smollm2_vocab, "[\n    1,\n    2\n]")
    assert not accepts(custom, smollm2_vocab, "[ 1]")


def test_big_schema_shares_nodes():
    """Many nested object schemas in a reference cycle: one nonterminal per distinct node and
    one terminal per distinct lexeme, so the grammar grows linearly."""
    n = 100
    defs = {f"d{i}": {"type": "object", "properties": {
        "name": {"type": "string"}, "next": {"$ref": f"#/$defs/d{(i + 1) % n}"},
        "n": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
        f"only{i}": {"enum": ["a", "b", f"v{i}"]}}} for i in range(n)}
    constraint = JsonSchema({"$defs": defs, "$ref": "#/$defs/d0"})
    # per def: its own key, its enum and its additional-key terminal; the rest is shared
    assert len(constraint.compiled.terminal_dfas) <= 3 * n + 20
    assert len(constraint.compiled.cfg.rules) <= 50 * n


OLDER_DRAFTS = [
    ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "properties": {
        "n": {"type": "number", "minimum": 2, "exclusiveMinimum": True},
        "t": {"type": "array", "items": [{"type": "string"}], "additionalItems": False}},
      "dependencies": {"n": ["t"]}, "definitions": {"x": {"type": "null"}}},
     [{"n": 3, "t": ["a"]}, {"n": 2, "t": ["a"]}, {"n": 3}, {"t": ["a", "b"]}, {"t": []},
      {"t": [1]}]),
    ({"$schema": "http://json-schema.org/draft-07/schema#",
      "definitions": {"pos": {"type": "integer", "minimum": 1}},
      "properties": {"a": {"$ref": "#/definitions/pos", "maximum": 0},
                     "b": {"if": {"type": "string"}, "then": {"maxLength": 1}}},
      "dependencies": {"a": {"required": ["b"]}}},
     [{"a": 5, "b": "x"}, {"a": 5}, {"a": 0, "b": 1}, {"b": "xy"}, {"b": 3}]),
]


@pytest.mark.model
@pytest.mark.parametrize("schema,instances", OLDER_DRAFTS, ids=["draft4", "draft7"])
def test_older_drafts_keep_their_semantics(schema, instances, smollm2_vocab):
    """`$schema` of drafts 4-2019 reads their keywords (boolean exclusiveMinimum, items arrays,
    dependencies, $ref ignoring siblings) — checked against jsonschema's validator for them."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    constraint = JsonSchema(schema, property_order="any")
    outcomes = set()
    for value in instances:
        ok = validator.is_valid(value)
        outcomes.add(ok)
        assert accepts(constraint, smollm2_vocab, json.dumps(value, separators=(",", ":"))) == ok
    assert outcomes == {True, False}


@pytest.mark.model
def test_double_negation_and_unevaluated(smollm2_vocab):
    """not-not-X is X even where X has no exact complement; unevaluatedProperties seen
    through anyOf branches (any subset of valid branches evaluates its keys)."""
    schema = {"not": {"not": {"properties": {"a": {}}, "additionalProperties": False}}}
    uneval = {"anyOf": [{"properties": {"a": {"type": "integer"}}},
                        {"properties": {"b": {"type": "string"}}, "required": ["b"]}],
              "unevaluatedProperties": False}
    for s, values in ((schema, [{"a": 1}, {"b": 1}, {}, 3]),
                      (uneval, [{"a": 1}, {"b": "x"}, {"a": 1, "b": "x"}, {"a": "s", "b": "x"},
                                {"c": 1}, {"a": 1, "c": 2}, {"b": 2}])):
        constraint = JsonSchema(s, property_order="any")
        for value in values:
            text = json.dumps(value, separators=(",", ":"))
            assert accepts(constraint, smollm2_vocab, text) == valid(s, value), text


@pytest.mark.model
def test_dynamic_ref_follows_dynamic_scope(smollm2_vocab):
    """A strict tree extending a generic tree through $dynamicRef: the outermost resource
    defining the anchor wins, so children are strict too (as jsonschema decides)."""
    schema = {
        "$id": "https://example.com/strict-tree",
        "$dynamicAnchor": "node",
        "$ref": "tree",
        "unevaluatedProperties": False,
        "$defs": {"tree": {
            "$id": "https://example.com/tree",
            "$dynamicAnchor": "node",
            "type": "object",
            "properties": {"data": True,
                           "children": {"type": "array", "items": {"$dynamicRef": "#node"}}}}},
    }
    constraint = JsonSchema(schema, property_order="any")
    for value in ({"children": [{"daat": 1}]}, {"children": [{"data": 1}]}, {"daat": 1},
                  {"data": 1, "children": [{"children": [{"x": 1}]}]}):
        text = json.dumps(value, separators=(",", ":"))
        assert accepts(constraint, smollm2_vocab, text) == valid(schema, value), text


def test_lexeme_refusals_are_located_and_droppable():
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)y"}}}
    with pytest.raises(UnsupportedSchemaError) as e:
        JsonSchema(schema)
    assert e.value.keyword == "pattern" and e.value.pointer == "/properties/a/pattern"
    lenient = JsonSchema(schema, lenient=True)
    assert len(lenient.warnings) == 1 and "/properties/a/pattern" in lenient.warnings[0]


# --- metaschema validation without jsonschema on valid 2020-12 schemas ------------------------

_META_VALUES = [None, True, False, 0, -1, 1.5, 2.0, -0.0, float("inf"), 10**30, "x", "", "#", "a#b",
                "_a", "1a", "a\n", "array", "integer", [], [1], ["string"], ["string", "string"],
                ["integer", "null"], [[]], {}, {"type": 5}, {"a": True}, {"a": ["x"]},
                {"a": ["x", "x"]}]
_META_KEYWORDS = [
    "$id", "$schema", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
    "$comment", "$defs", "prefixItems", "items", "contains", "additionalProperties", "properties",
    "patternProperties", "dependentSchemas", "propertyNames", "if", "then", "else", "allOf",
    "anyOf", "oneOf", "not", "unevaluatedItems", "unevaluatedProperties", "type", "const", "enum",
    "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
    "maxProperties", "minProperties", "required", "dependentRequired", "title", "description",
    "default", "deprecated", "readOnly", "writeOnly", "examples", "format", "contentEncoding",
    "contentMediaType", "contentSchema", "definitions", "dependencies", "$recursiveAnchor",
    "$recursiveRef", "unknownKeyword"]


def _mutants(n: int, seed: int) -> Iterator[Any]:
    """Schemas with 1–2 keyword values replaced by arbitrary JSON (often invalid ones)."""
    rnd = random.Random(seed)
    bases = [{"type": "object", "properties": {"a": {"type": "string", "minLength": 1},
                                               "b": {"items": {"enum": [1, 2]}}},
              "required": ["a"], "$defs": {"x": {"anyOf": [{"type": "integer"}, True]}}},
             {"allOf": [{"$ref": "#/$defs/x"}], "dependencies": {"a": ["b"], "c": {}}},
             {"prefixItems": [{}, False], "contains": {"const": 1}, "$anchor": "a"}]
    for _ in range(n):
        schema = copy.deepcopy(rnd.choice(bases))
        subs: list[dict] = []
        stack: list[Any] = [schema]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                subs.append(v)
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
        for _ in range(rnd.randint(1, 2)):
            rnd.choice(subs)[rnd.choice(_META_KEYWORDS)] = copy.deepcopy(rnd.choice(_META_VALUES))
        yield schema


def test_metaschema_fast_check_is_never_more_lenient():
    """`valid_2020_12` (which lets check_schema skip jsonschema) says True only for schemas
    jsonschema's metaschema validation accepts — and does for the valid ones here."""
    from structgen.schema.resolve import valid_2020_12

    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    both = 0
    for schema in _mutants(3000, 0):
        valid_meta = meta.is_valid(schema)
        assert valid_2020_12(schema) == valid_meta, schema
        both += valid_meta
    assert both > 200  # the mutants include valid schemas


_DRAFT_BASES = {
    "http://json-schema.org/draft-04/schema#": [
        {"type": "object", "properties": {"a": {"type": "string", "minLength": 1},
                                          "b": {"items": {"enum": [1, 2]}, "maximum": 3,
                                                "exclusiveMaximum": True}},
         "required": ["a"], "additionalProperties": False,
         "definitions": {"x": {"anyOf": [{"type": "integer"}, {"enum": ["a", "b"]}]}}},
        {"allOf": [{"$ref": "#/definitions/x"}], "dependencies": {"a": ["b"], "c": {}},
         "items": [{}, {"not": {}}], "additionalItems": True}],
    "http://json-schema.org/draft-07/schema#": [
        {"type": "object", "properties": {"a": {"type": "string", "minLength": 1},
                                          "b": {"items": {"enum": [1, 2]}, "exclusiveMaximum": 3}},
         "required": ["a"], "if": {"required": ["b"]}, "then": True,
         "definitions": {"x": {"anyOf": [{"type": "integer"}, True]}}},
        {"allOf": [{"$ref": "#/definitions/x"}], "dependencies": {"a": ["b"], "c": {}},
         "items": [{}, False], "contains": {"const": 1}, "propertyNames": {"pattern": "^a"}}],
}
_DRAFT_VALUES = _META_VALUES + [[1, 1], [1, True], ["a", "a"], [{}], [True], {"a": []}]
_DRAFT_KEYWORDS = _META_KEYWORDS + ["id", "additionalItems", "definitions", "dependencies"]


@pytest.mark.parametrize("dialect", sorted(_DRAFT_BASES))
def test_metaschema_fast_check_older_drafts_never_more_lenient(dialect):
    """Drafts 4 and 7 too: the fast check accepts only what jsonschema's metaschema validation
    accepts (draft 4 may defer more to jsonschema: enums of mixed types)."""
    from structgen.schema.resolve import _FAST_METASCHEMAS

    rnd = random.Random(1)
    cls = jsonschema.validators.validator_for({"$schema": dialect})
    meta, fast = cls(cls.META_SCHEMA), _FAST_METASCHEMAS[cls]
    agree = 0
    for _ in range(2000):
        schema = copy.deepcopy(rnd.choice(_DRAFT_BASES[dialect]))
        schema["$schema"] = dialect
        subs: list[dict] = []
        stack: list[Any] = [schema]
        while stack:
            v = stack.pop()
            if isinstance(v, dict):
                subs.append(v)
                stack.extend(v.values())
            elif isinstance(v, list):
                stack.extend(v)
        for _ in range(rnd.randint(1, 2)):
            rnd.choice(subs)[rnd.choice(_DRAFT_KEYWORDS)] = copy.deepcopy(rnd.choice(_DRAFT_VALUES))
        valid_meta = meta.is_valid(schema)
        if fast(schema):
            assert valid_meta, schema
            agree += 1
    assert agree > 200


def test_invalid_schema_message_is_the_validators():
    schema = {"properties": {"a": {"minLength": -1}}}
    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    error = jsonschema.exceptions.best_match(meta.iter_errors(schema))
    with pytest.raises(SchemaError) as e:
        JsonSchema(schema)
    assert str(e.value).startswith(f"invalid schema: {error.message}")
    assert e.value.pointer == "/properties/a/minLength"


@pytest.mark.parametrize("schema,first,more", [
    ({"type": "array", "items": {"type": "string"}}, '["a", "b", "c", "', 'd", "'),
    ({"type": "object", "additionalProperties": {"type": "integer"}},
     '{"a": 1, "b": 2, "c": 3, "', 'd": 4, "'),
])
def test_repeated_positions_are_one_grammar_state(schema, first, more, smollm2_vocab):
    """Repetitions are left-recursive and Earley sets are interned, so the position after
    one more element (or entry) is the same grammar state as before it: masks computed there
    are reused, not recomputed for every element."""
    automaton = JsonSchema(schema, property_order="any",
                           whitespace="flexible").compile(smollm2_vocab)
    grammar = getattr(automaton, "grammar", automaton)
    a = automaton._advance_bytes(automaton.start, first.encode())
    b = automaton._advance_bytes(automaton.start, (first + more).encode())
    assert a is not None and b is not None
    assert grammar._id(a[0]) == grammar._id(b[0])


def test_an_id_that_is_not_a_string_is_a_schema_error():
    """Under an unknown keyword the metaschema does not look, but a `$ref` may lead there
    (MaskBench Github_medium o28532: a draft-4 `items` whose "id" is a property schema)."""
    for name, draft in (("id", "http://json-schema.org/draft-04/schema#"),
                        ("$id", "https://json-schema.org/draft/2020-12/schema")):
        schema = {"$schema": draft, "x": {"type": "array", "items": {name: {"type": "integer"}}},
                  "properties": {"s": {"$ref": "#/x"}}}
        with pytest.raises(SchemaError) as e:
            JsonSchema(schema)
        assert e.value.pointer == f"/x/items/{name}" and "not a string" in str(e.value)
