"""`JsonSchema`: JSON documents valid against a JSON Schema (draft 2020-12) or a Pydantic model.

The schema is compiled once, at construction, into a context-free grammar whose terminals are
exact byte DFAs (`structgen.schema.compile`); per vocabulary it becomes a `GrammarAutomaton`,
so masks, forced tokens and budget plans work as for `Grammar`, composed with a key tracker
(`structgen.constraints.json_keys`) that keeps any object from holding the same key twice —
what the grammar alone cannot say without one state per set of keys — and, where `uniqueItems`
ranges over unboundedly many values, an items tracker (`structgen.constraints.json_unique`);
where a maxLength is too large for a DFA, a code-point counter (`.json_lengths`).
"""
from __future__ import annotations

import json
from typing import Any, Hashable

from ..automata.grammar import CompiledGrammar
from ..schema.compile import CAPPED, UNIQUE_OPEN, compile_schema
from ..schema.resolve import load_json
from ..vocab.token_bytes import Vocabulary
from .base import Constraint, TokenAutomaton
from .grammar import GrammarAutomaton
from .json_keys import KeyTrackingAutomaton
from .json_lengths import LengthCapAutomaton
from .json_unique import UniqueItemsAutomaton


class JsonSchema(Constraint):
    """JSON text whose value validates against `schema` (every output checks with
    `jsonschema.Draft202012Validator` and its format checker).

    `schema`: a dict or bool, its JSON text, or a Pydantic (v2) model class — then `parse`
    returns a model instance. Options:

    - `whitespace`: "compact" (default: no whitespace — the fewest tokens, and small models
      cannot wander into whitespace loops), "flexible" (at every place JSON allows whitespace, one
      run of 1–32 of space/tab/newline/CR: enough for pretty printing, bounded so a model cannot
      spend its budget on it), or a regex for one whitespace run (must not match the empty
      string; only JSON whitespace bytes).
    - `property_order`: "schema" (default: named properties in the order the schema lists them,
      optional ones skippable, then additional properties — how models are prompted and how
      Pydantic serialises, and the grammar stays linear in the number of properties) or "any"
      (any order; the grammar tracks which *required* keys are present, refused beyond 5000
      such sets per object: 12 required properties, while optional ones are unlimited).
    - `spelling`: "canonical" (default: each value written one way — strings as
      `json.dumps(v, ensure_ascii=False)` escapes them, numbers in plain decimal without exponent,
      leading or trailing zeros — so keys and constants are forced text and a small model cannot
      drift into `"k\\u0065y"` or `1.10e+01`) or "any" (every JSON spelling of a valid value: for
      checking documents written elsewhere, e.g. by `json.dumps` with its default ASCII escapes).
      Either way the set of values is the same.
    - `lenient`: drop keywords that cannot be enforced exactly instead of raising
      UnsupportedSchemaError; each drop is listed in `.warnings` (keyword and JSON pointer).
    - `format_assertion`: False ignores `format` (an annotation, as by default in 2020-12).
    - `registry`: a `referencing.Registry` holding remote schemas that `$ref` may use (nothing is
      ever fetched from the network).

    No object ever holds the same key twice, in either property order and whatever the
    spelling (`"a"` and `"\\u0061"` are one key): a key tracker composed with the grammar
    (`structgen.constraints.json_keys`) refuses a repeated key, and any token after which only
    keys already present could follow. So `minProperties` counts distinct keys, additional ones
    included (a finite set of possible additional keys is counted exactly).
    """

    def __init__(self, schema: Any, *, whitespace: str = "compact",
                 property_order: str = "schema", spelling: str = "canonical",
                 lenient: bool = False, format_assertion: bool = True,
                 registry: Any = None) -> None:
        super().__init__()
        self.model: Any = None
        if isinstance(schema, type):
            import pydantic

            if not issubclass(schema, pydantic.BaseModel):
                raise TypeError(f"expected a JSON Schema or a pydantic.BaseModel subclass, "
                                f"not {schema.__name__}")
            self.model = schema
            schema = schema.model_json_schema()
        self.schema = load_json(schema)
        self.whitespace = whitespace
        self.property_order = property_order
        self.spelling = spelling
        self.compiled: CompiledGrammar
        key = None
        if registry is None:  # (a registry's documents are not part of the key)
            value = _value_key(self.schema)
            if value is not None:
                key = ("json", value, whitespace, property_order, spelling, lenient,
                       format_assertion)
        self.compiled, warnings = self._shared(key, lambda: compile_schema(
            self.schema, whitespace=whitespace, property_order=property_order, spelling=spelling,
            lenient=lenient, format_assertion=format_assertion, registry=registry))
        self.warnings = list(warnings)

    def __repr__(self) -> str:
        name = self.model.__name__ if self.model is not None else "schema"
        return (f"JsonSchema(<{name}: {len(self.compiled.cfg.rules)} rules>, "
                f"whitespace={self.whitespace!r}, property_order={self.property_order!r}, "
                f"spelling={self.spelling!r})")

    def _build(self, vocab: Vocabulary) -> TokenAutomaton:
        automaton = KeyTrackingAutomaton(GrammarAutomaton(self.compiled, vocab),
                                         self.compiled.terminal_dfas, self.compiled.literal_keys)
        names = self.compiled.cfg.terminal_names
        if UNIQUE_OPEN in names:
            plain = names.index("'['") if "'['" in names else None
            automaton = UniqueItemsAutomaton(automaton, names.index(UNIQUE_OPEN), plain)
        caps = {t: int(name[len(CAPPED):]) for t, name in enumerate(names)
                if name.startswith(CAPPED)}
        if caps:
            automaton = LengthCapAutomaton(automaton, caps)
        return automaton

    def parse(self, text: str) -> Any:
        """The parsed JSON value, or a model instance when a Pydantic model was given."""
        if self.model is not None:
            return self.model.model_validate_json(text)
        return json.loads(text)


def _value_key(value: Any) -> Hashable | None:
    """A key equal only for schema values that compile alike: the JSON text keeps dict order
    (it is the property order) and number types (`1`, `1.0`, `true` and `-0.0` differ); None
    for a value the text does not stand for exactly (non-string keys, tuples, NaN). Both steps
    run in C: the key is made on every construction, shared or not."""
    try:
        text = json.dumps(value, ensure_ascii=False)
        return text if json.loads(text) == value else None
    except (TypeError, ValueError, RecursionError):
        return None
