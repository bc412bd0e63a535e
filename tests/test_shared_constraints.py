"""Equal constraints made again share their compiled form and automata (`Constraint._shared`):
an extraction run that writes `JsonSchema(schema)` per document compiles once and finds the
masks of states it met before cached. Sharing must never join constraints that differ."""
from __future__ import annotations

import threading

import pytest
from pydantic import BaseModel

from structgen import Grammar, JsonSchema, Matcher, Regex
from structgen.constraints import base
from structgen.errors import SchemaError

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
          "required": ["a"]}


@pytest.fixture(autouse=True)
def _empty_shared():
    base.forget_shared()
    yield
    base.forget_shared()


def _automaton(constraint, vocab):
    return constraint.compile(vocab)


def test_equal_constraints_share_compiled_form_and_automata(smollm2_vocab):
    pairs = [
        (JsonSchema(SCHEMA), JsonSchema(dict(SCHEMA))),
        (JsonSchema('{"type": "integer"}'), JsonSchema({"type": "integer"})),
        (Grammar('start: "a"+'), Grammar('start: "a"+')),
        (Regex(r"\d+"), Regex(r"\d+")),
    ]
    for first, again in pairs:
        assert _automaton(first, smollm2_vocab) is _automaton(again, smollm2_vocab)
    assert pairs[0][0].compiled is pairs[0][1].compiled


@pytest.mark.parametrize("one, other", [
    # property order is part of the schema (property_order="schema" writes keys in it)
    (SCHEMA, {"type": "object", "properties": {"b": {"type": "string"}, "a": {"type": "integer"}},
              "required": ["a"]}),
    # JSON types differ: 1, 1.0 and true are not the same value
    ({"enum": [1, "x"]}, {"enum": [1.0, "x"]}),
    ({"enum": [1, "x"]}, {"enum": [True, "x"]}),
    ({"const": 0}, {"const": False}),
    ({"const": 0.0}, {"const": -0.0}),  # equal numbers, but canonical spellings differ
])
def test_different_schemas_are_not_shared(one, other, smollm2_vocab):
    a, b = JsonSchema(one), JsonSchema(other)
    assert a.compiled is not b.compiled
    assert _automaton(a, smollm2_vocab) is not _automaton(b, smollm2_vocab)


def test_schema_key_is_exact():
    from structgen.constraints.json_schema import _value_key

    assert _value_key({"a": 1}) != _value_key({"a": 1.0}) != _value_key({"a": True})
    assert _value_key({"a": 1, "b": 2}) != _value_key({"b": 2, "a": 1})
    for inexact in ({1: "a"}, {"a": (1, 2)}, {"a": float("nan")}, {"a": object()}):
        assert _value_key(inexact) is None  # not plain JSON: never shared


def test_options_are_part_of_the_key():
    plain = JsonSchema(SCHEMA)
    for other in (JsonSchema(SCHEMA, whitespace="flexible"),
                  JsonSchema(SCHEMA, property_order="any"),
                  JsonSchema(SCHEMA, spelling="any"),
                  JsonSchema(SCHEMA, format_assertion=False)):
        assert other.compiled is not plain.compiled
    text = 's: "a"+\nt: "b"+'
    assert Grammar(text, "s").compiled is not Grammar(text, "t").compiled
    assert Grammar('start: "a"+').compiled is not Grammar('start: "a"+ "b"').compiled


def test_pydantic_models_share_the_grammar_not_the_model(smollm2):
    class One(BaseModel):
        x: int

    class Two(BaseModel):  # the same JSON schema apart from its title
        x: int

    a, b = JsonSchema(One), JsonSchema(One)
    assert a.compiled is b.compiled and a.model is b.model is One
    c = JsonSchema(Two)
    assert c.model is Two
    assert c.parse('{"x": 1}') == Two(x=1)


def test_lenient_warnings_are_per_constraint():
    schema = {"type": "string", "pattern": "(?<=a)b"}
    a = JsonSchema(schema, lenient=True)
    b = JsonSchema(schema, lenient=True)
    assert a.compiled is b.compiled and a.warnings == b.warnings and a.warnings
    a.warnings.clear()
    assert b.warnings


def test_a_failed_compile_is_not_cached():
    with pytest.raises(SchemaError):
        JsonSchema({"type": "nonsense"})
    with pytest.raises(SchemaError):
        JsonSchema({"type": "nonsense"})
    assert not base._SHARED


def test_registry_schemas_are_not_shared():
    import referencing

    registry = referencing.Registry()
    assert JsonSchema(SCHEMA, registry=registry).compiled is not \
        JsonSchema(SCHEMA, registry=registry).compiled


def test_bounded_least_recently_used(monkeypatch):
    monkeypatch.setattr(base, "SHARED_MAX", 3)
    first = Regex("a")
    for p in ("b", "c"):
        Regex(p)
    assert Regex("a").dfa is first.dfa  # a lookup: "a" is now the most recent
    Regex("d")  # evicts "b", the least recently used
    assert len(base._SHARED) == 3
    keys = {k[1] for k in base._SHARED}
    assert ("regex", "b") not in keys and ("regex", "a") in keys


def test_other_threads_get_their_own(smollm2_vocab):
    here = Regex(r"[a-z]+")
    got = []
    thread = threading.Thread(target=lambda: got.append(Regex(r"[a-z]+")))
    thread.start()
    thread.join()
    assert _automaton(got[0], smollm2_vocab) is not _automaton(here, smollm2_vocab)


def test_shared_automaton_gives_the_same_masks(smollm2):
    """A matcher on a constraint made again sees masks equal to a cold constraint's (its
    states were met by the first constraint's matcher)."""
    text = '{"a": 12, "b": "xy"}'
    ids = smollm2.tokenizer.encode(text.replace(" ", ""), add_special_tokens=False)

    def masks(constraint):
        m = Matcher(constraint, smollm2.tokenizer, vocab_size=smollm2.vocab.width)
        out = []
        for t in ids:
            out.append(m.mask().clone())
            assert m.consume(t)
        out.append(m.mask().clone())
        return out

    cold = masks(JsonSchema(SCHEMA))
    warm = masks(JsonSchema(SCHEMA))
    base.forget_shared()
    fresh = masks(JsonSchema(SCHEMA))
    assert all((a == b).all() and (a == c).all() for a, b, c in zip(cold, warm, fresh))


def test_conformance_runner_compiles_cold(smollm2):
    """The MaskBench / test-suite runner times cold compiles: it neither takes a constraint
    shared earlier nor leaves its own shared (its deallocation would land in the next case's
    timed compile)."""
    from structgen.schema.conformance import StructgenSchemaEngine

    held = JsonSchema(SCHEMA, property_order="any", whitespace="flexible", spelling="any")
    engine = StructgenSchemaEngine(smollm2.tokenizer, None, smollm2.vocab.width)
    first = engine.compile(SCHEMA, format_assertion=True)
    assert first.compiled is not held.compiled
    assert not base._SHARED
    assert engine.compile(SCHEMA, format_assertion=True).compiled is not first.compiled
