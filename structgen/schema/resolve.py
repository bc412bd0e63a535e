"""Loading a JSON Schema: metaschema validation, locations and `$ref` resolution.

A `Location` is one subschema together with the resolver that knows its base URI (so relative
references inside it resolve correctly) and its JSON pointer (so errors say where). References
are resolved with `referencing` against the document itself plus whatever the caller's
`referencing.Registry` holds: no retrieval function is installed, so a remote reference is never
fetched — it is refused unless the caller registered it (structgen never touches the network).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urldefrag, urljoin

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing.jsonschema import DRAFT202012

from ..errors import SchemaError, UnsupportedSchemaError

ROOT_URI = "urn:structgen:root"
# Dialects by `$schema` (without a trailing "#"): older drafts are read with their own
# semantics by `upgrade` (compile.py), validated against their own metaschema.
DIALECTS = {
    "http://json-schema.org/draft-04/schema": "draft4",
    "http://json-schema.org/draft-06/schema": "draft6",
    "http://json-schema.org/draft-07/schema": "draft7",
    "https://json-schema.org/draft/2019-09/schema": "draft2019",
    "https://json-schema.org/draft/2020-12/schema": "draft2020",
}


def _escape(token: Any) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer_of(path: Any) -> str:
    """JSON pointer from a sequence of keys/indices."""
    return "".join("/" + _escape(p) for p in path)


def load_json(schema: Any) -> Any:
    """A schema given as JSON text → its value (SchemaError when the text is not JSON)."""
    if not isinstance(schema, str):
        return schema
    try:
        return json.loads(schema)
    except json.JSONDecodeError as e:
        raise SchemaError(f"schema text is not JSON: {e.msg} (line {e.lineno}, column {e.colno})",
                          "") from None


def dialect_of(schema: Any) -> str:
    """The draft a schema declares with `$schema` (default 2020-12); others are refused."""
    if not isinstance(schema, dict) or "$schema" not in schema:
        return "draft2020"
    uri = str(schema["$schema"]).rstrip("#")
    if uri not in DIALECTS:
        raise UnsupportedSchemaError("$schema", f"unknown dialect {uri!r}: structgen reads drafts "
                                     "4, 6, 7, 2019-09 and 2020-12", "/$schema")
    return DIALECTS[uri]


def check_schema(schema: Any) -> None:
    """Validate against the metaschema of the schema's draft; SchemaError with the validator's
    message and the pointer of the offending subschema.

    A 2020-12 schema that `valid_2020_12` proves valid skips `jsonschema` (whose `$dynamicRef`
    resolution costs milliseconds on every schema); any other goes through it, so every refusal
    and its message are the validator's."""
    if not isinstance(schema, (dict, bool)):
        raise SchemaError(f"a schema must be an object or a boolean, not {type(schema).__name__}")
    dialect_of(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    fast = _FAST_METASCHEMAS.get(cls)
    if fast is not None and fast(schema):
        return
    validator = _META_VALIDATORS.get(cls)
    if validator is None:
        validator = _META_VALIDATORS[cls] = cls(cls.META_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(schema))
    if error is not None:
        raise SchemaError(f"invalid schema: {error.message}", pointer_of(error.absolute_path))


_META_VALIDATORS: dict[Any, Any] = {}


# --- the draft 2020-12 metaschema, as code ---------------------------------------------------
#
# The metaschema (jsonschema_specifications' draft202012/metaschema.json and its vocabularies
# core, applicator, unevaluated, validation, meta-data, format-annotation, content) applies to
# every subschema in a schema position the same way (`$dynamicRef: "#meta"` resolves to the
# metaschema itself), and each keyword it names constrains only that keyword's value: so a
# schema is valid iff each (sub)schema is an object or a boolean and each keyword value below
# passes its check, with subschema positions checked in turn. Formats are annotations there
# (not asserted by `jsonschema`'s metaschema validation either). Checks are never more
# lenient than the metaschema (types as `jsonschema`'s 2020-12 type checker reads them, numbers
# only int/float); where unsure they answer False and `jsonschema` decides.

_SIMPLE_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_ANCHOR = "^[A-Za-z_][-A-Za-z0-9._]*$"  # core's anchorString, read with re.search as jsonschema does
_ID = "^[^#]*#?$"  # core's $id pattern


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_nonnegative_integer(v: Any) -> bool:
    integer = ((isinstance(v, int) and not isinstance(v, bool))
               or (isinstance(v, float) and v.is_integer()))
    return integer and v >= 0


def _is_string_array(v: Any) -> bool:  # validation's stringArray: unique strings
    return isinstance(v, list) and all(isinstance(x, str) for x in v) and len(set(v)) == len(v)


def _check_type(v: Any, todo: list) -> bool:
    if isinstance(v, str):
        return v in _SIMPLE_TYPES
    return (isinstance(v, list) and len(v) >= 1 and all(isinstance(x, str) and x in _SIMPLE_TYPES
                                                        for x in v) and len(set(v)) == len(v))


def _check_schema_value(v: Any, todo: list) -> bool:
    todo.append(v)
    return True


def _check_schema_map(v: Any, todo: list) -> bool:
    if not isinstance(v, dict):
        return False
    todo.extend(v.values())
    return True


def _check_schema_array(v: Any, todo: list) -> bool:
    if not isinstance(v, list) or not v:
        return False
    todo.extend(v)
    return True


def _check_dependencies(v: Any, todo: list) -> bool:  # anyOf: a schema or a stringArray
    if not isinstance(v, dict):
        return False
    todo.extend(x for x in v.values() if not _is_string_array(x))
    return True


_KEYWORD_CHECKS: dict[str, Any] = {
    # core
    "$id": lambda v, todo: isinstance(v, str) and re.search(_ID, v) is not None,
    "$schema": lambda v, todo: isinstance(v, str),
    "$ref": lambda v, todo: isinstance(v, str),
    "$anchor": lambda v, todo: isinstance(v, str) and re.search(_ANCHOR, v) is not None,
    "$dynamicRef": lambda v, todo: isinstance(v, str),
    "$dynamicAnchor": lambda v, todo: isinstance(v, str) and re.search(_ANCHOR, v) is not None,
    "$vocabulary": lambda v, todo: isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(x, bool) for k, x in v.items()),
    "$comment": lambda v, todo: isinstance(v, str),
    "$defs": _check_schema_map,
    # applicator
    "prefixItems": _check_schema_array,
    "items": _check_schema_value,
    "contains": _check_schema_value,
    "additionalProperties": _check_schema_value,
    "properties": _check_schema_map,
    "patternProperties": _check_schema_map,
    "dependentSchemas": _check_schema_map,
    "propertyNames": _check_schema_value,
    "if": _check_schema_value,
    "then": _check_schema_value,
    "else": _check_schema_value,
    "allOf": _check_schema_array,
    "anyOf": _check_schema_array,
    "oneOf": _check_schema_array,
    "not": _check_schema_value,
    # unevaluated
    "unevaluatedItems": _check_schema_value,
    "unevaluatedProperties": _check_schema_value,
    # validation
    "type": _check_type,
    "enum": lambda v, todo: isinstance(v, list),
    "multipleOf": lambda v, todo: _is_number(v) and v > 0,
    "maximum": lambda v, todo: _is_number(v),
    "exclusiveMaximum": lambda v, todo: _is_number(v),
    "minimum": lambda v, todo: _is_number(v),
    "exclusiveMinimum": lambda v, todo: _is_number(v),
    "maxLength": lambda v, todo: _is_nonnegative_integer(v),
    "minLength": lambda v, todo: _is_nonnegative_integer(v),
    "pattern": lambda v, todo: isinstance(v, str),
    "maxItems": lambda v, todo: _is_nonnegative_integer(v),
    "minItems": lambda v, todo: _is_nonnegative_integer(v),
    "uniqueItems": lambda v, todo: isinstance(v, bool),
    "maxContains": lambda v, todo: _is_nonnegative_integer(v),
    "minContains": lambda v, todo: _is_nonnegative_integer(v),
    "maxProperties": lambda v, todo: _is_nonnegative_integer(v),
    "minProperties": lambda v, todo: _is_nonnegative_integer(v),
    "required": lambda v, todo: _is_string_array(v),
    "dependentRequired": lambda v, todo: isinstance(v, dict) and all(
        _is_string_array(x) for x in v.values()),
    # meta-data ("default", "const": any value)
    "title": lambda v, todo: isinstance(v, str),
    "description": lambda v, todo: isinstance(v, str),
    "deprecated": lambda v, todo: isinstance(v, bool),
    "readOnly": lambda v, todo: isinstance(v, bool),
    "writeOnly": lambda v, todo: isinstance(v, bool),
    "examples": lambda v, todo: isinstance(v, list),
    # format-annotation, content
    "format": lambda v, todo: isinstance(v, str),
    "contentEncoding": lambda v, todo: isinstance(v, str),
    "contentMediaType": lambda v, todo: isinstance(v, str),
    "contentSchema": _check_schema_value,
    # the metaschema's own properties (keywords of earlier drafts)
    "definitions": _check_schema_map,
    "dependencies": _check_dependencies,
    "$recursiveAnchor": lambda v, todo: isinstance(v, str) and re.search(_ANCHOR, v) is not None,
    "$recursiveRef": lambda v, todo: isinstance(v, str),
}


def _meta_valid(schema: Any, checks: dict[str, Any], booleans: bool) -> bool:
    """Whether every (sub)schema reached is an object (or a boolean, where `booleans`) whose
    keywords pass `checks` (each may queue subschemas)."""
    todo = [schema]
    seen: set[int] = set()
    while todo:
        s = todo.pop()
        if s is True or s is False:
            if booleans:
                continue
            return False
        if not isinstance(s, dict):
            return False
        if id(s) in seen:  # (the same object again: already checked)
            continue
        seen.add(id(s))
        for k, v in s.items():
            check = checks.get(k)
            if check is not None and not check(v, todo):
                return False
    return True


def valid_2020_12(schema: Any) -> bool:
    """True only when `schema` is valid against the draft 2020-12 metaschema (False: it may
    not be; `jsonschema` decides). Any other keyword is unconstrained there."""
    return _meta_valid(schema, _KEYWORD_CHECKS, True)


# Draft 7 (draft7/metaschema.json: one schema, `$ref: "#"` for subschemas, booleans allowed)
# and draft 4 (draft4/metaschema.json: subschemas are objects, booleans only where a keyword
# says so; "integer" is an int, not 1.0; exclusiveMaximum/Minimum are booleans that need
# maximum/minimum beside them; enum and required non-empty and unique).

def _check_items(v: Any, todo: list) -> bool:  # anyOf: a schema or a schemaArray
    if isinstance(v, list):
        return _check_schema_array(v, todo)
    todo.append(v)
    return True


def _is_unique_scalars(v: list) -> bool:
    """Provably unique items (as jsonschema's `uniq` compares them): all strings, or all ints."""
    if all(isinstance(x, str) for x in v) or all(
            isinstance(x, int) and not isinstance(x, bool) for x in v):
        return len(set(v)) == len(v)
    return False


_DRAFT7_CHECKS: dict[str, Any] = {
    "$id": lambda v, todo: isinstance(v, str),
    "$schema": lambda v, todo: isinstance(v, str),
    "$ref": lambda v, todo: isinstance(v, str),
    "$comment": lambda v, todo: isinstance(v, str),
    "title": lambda v, todo: isinstance(v, str),
    "description": lambda v, todo: isinstance(v, str),
    "readOnly": lambda v, todo: isinstance(v, bool),
    "examples": lambda v, todo: isinstance(v, list),
    "multipleOf": lambda v, todo: _is_number(v) and v > 0,
    "maximum": lambda v, todo: _is_number(v),
    "exclusiveMaximum": lambda v, todo: _is_number(v),
    "minimum": lambda v, todo: _is_number(v),
    "exclusiveMinimum": lambda v, todo: _is_number(v),
    "maxLength": lambda v, todo: _is_nonnegative_integer(v),
    "minLength": lambda v, todo: _is_nonnegative_integer(v),
    "pattern": lambda v, todo: isinstance(v, str),
    "additionalItems": _check_schema_value,
    "items": _check_items,
    "maxItems": lambda v, todo: _is_nonnegative_integer(v),
    "minItems": lambda v, todo: _is_nonnegative_integer(v),
    "uniqueItems": lambda v, todo: isinstance(v, bool),
    "contains": _check_schema_value,
    "maxProperties": lambda v, todo: _is_nonnegative_integer(v),
    "minProperties": lambda v, todo: _is_nonnegative_integer(v),
    "required": lambda v, todo: _is_string_array(v),
    "additionalProperties": _check_schema_value,
    "definitions": _check_schema_map,
    "properties": _check_schema_map,
    "patternProperties": _check_schema_map,
    "dependencies": _check_dependencies,
    "propertyNames": _check_schema_value,
    "enum": lambda v, todo: isinstance(v, list),
    "type": _check_type,
    "format": lambda v, todo: isinstance(v, str),
    "contentMediaType": lambda v, todo: isinstance(v, str),
    "contentEncoding": lambda v, todo: isinstance(v, str),
    "if": _check_schema_value,
    "then": _check_schema_value,
    "else": _check_schema_value,
    "allOf": _check_schema_array,
    "anyOf": _check_schema_array,
    "oneOf": _check_schema_array,
    "not": _check_schema_value,
}


def valid_draft7(schema: Any) -> bool:
    """True only when `schema` is valid against the draft 7 metaschema."""
    return _meta_valid(schema, _DRAFT7_CHECKS, True)


def _is_int4(v: Any) -> bool:  # draft 4's "integer" with its minimum 0
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_string_array4(v: Any) -> bool:  # draft 4's stringArray: also minItems 1
    return _is_string_array(v) and len(v) >= 1


def _check_bool_or_schema(v: Any, todo: list) -> bool:
    if not isinstance(v, bool):
        todo.append(v)
    return True


def _check_dependencies4(v: Any, todo: list) -> bool:
    if not isinstance(v, dict):
        return False
    todo.extend(x for x in v.values() if not _is_string_array4(x))
    return True


def _check_type4(v: Any, todo: list) -> bool:
    if isinstance(v, str):
        return v in _SIMPLE_TYPES
    return (isinstance(v, list) and len(v) >= 1 and all(isinstance(x, str) and x in _SIMPLE_TYPES
                                                        for x in v) and len(set(v)) == len(v))


_DRAFT4_CHECKS: dict[str, Any] = {
    "id": lambda v, todo: isinstance(v, str),
    "$schema": lambda v, todo: isinstance(v, str),
    "title": lambda v, todo: isinstance(v, str),
    "description": lambda v, todo: isinstance(v, str),
    "multipleOf": lambda v, todo: _is_number(v) and v > 0,
    "maximum": lambda v, todo: _is_number(v),
    "exclusiveMaximum": lambda v, todo: isinstance(v, bool),
    "minimum": lambda v, todo: _is_number(v),
    "exclusiveMinimum": lambda v, todo: isinstance(v, bool),
    "maxLength": lambda v, todo: _is_int4(v),
    "minLength": lambda v, todo: _is_int4(v),
    "pattern": lambda v, todo: isinstance(v, str),
    "additionalItems": _check_bool_or_schema,
    "items": _check_items,
    "maxItems": lambda v, todo: _is_int4(v),
    "minItems": lambda v, todo: _is_int4(v),
    "uniqueItems": lambda v, todo: isinstance(v, bool),
    "maxProperties": lambda v, todo: _is_int4(v),
    "minProperties": lambda v, todo: _is_int4(v),
    "required": lambda v, todo: _is_string_array4(v),
    "additionalProperties": _check_bool_or_schema,
    "definitions": _check_schema_map,
    "properties": _check_schema_map,
    "patternProperties": _check_schema_map,
    "dependencies": _check_dependencies4,
    "enum": lambda v, todo: isinstance(v, list) and len(v) >= 1 and _is_unique_scalars(v),
    "type": _check_type4,
    "format": lambda v, todo: isinstance(v, str),
    "allOf": _check_schema_array,
    "anyOf": _check_schema_array,
    "oneOf": _check_schema_array,
    "not": _check_schema_value,
}


def valid_draft4(schema: Any) -> bool:
    """True only when `schema` is valid against the draft 4 metaschema."""
    if not _meta_valid(schema, _DRAFT4_CHECKS, False):
        return False
    # the metaschema's dependencies: exclusiveMaximum needs maximum, exclusiveMinimum minimum
    todo, seen = [schema], set()
    while todo:
        s = todo.pop()
        if isinstance(s, dict) and id(s) not in seen:
            seen.add(id(s))
            if ("exclusiveMaximum" in s and "maximum" not in s
                    or "exclusiveMinimum" in s and "minimum" not in s):
                return False
            for k, v in s.items():
                if k in _DRAFT4_SUBSCHEMAS:
                    todo.extend(v.values() if isinstance(v, dict) and k in _DRAFT4_MAPS
                                else v if isinstance(v, list) else [v])
    return True


_DRAFT4_MAPS = frozenset({"definitions", "properties", "patternProperties", "dependencies"})
_DRAFT4_SUBSCHEMAS = _DRAFT4_MAPS | {"additionalItems", "items", "additionalProperties", "allOf",
                                     "anyOf", "oneOf", "not"}

_FAST_METASCHEMAS = {
    jsonschema.Draft202012Validator: valid_2020_12,
    jsonschema.Draft7Validator: valid_draft7,
    jsonschema.Draft4Validator: valid_draft4,
}


@dataclass(frozen=True, eq=False)
class Location:
    """One subschema: its value, the resolver for its base URI, and where it is (for errors)."""

    contents: Any
    resolver: Any = field(repr=False)  # referencing's Resolver
    pointer: str
    spec: Any = field(default=DRAFT202012, repr=False)  # the document's referencing spec
    # dynamic scope, as far as it matters: (anchor name, outermost resource defining it)
    scope: tuple[tuple[str, str], ...] = ()
    owner: "Resolver | None" = field(default=None, repr=False)

    @property
    def key(self) -> tuple:
        """Identity of this subschema: the same dict under the same base URI (and dynamic
        bindings) is the same node."""
        return (id(self.contents), str(self.resolver._base_uri), self.scope)

    def child(self, *path: str | int) -> "Location":
        """The subschema at `path` below this one (entering a new base URI at an `$id`)."""
        value = self.contents
        for p in path:
            value = value[p]
        resolver = _enter(self.resolver, value, self.spec, self.pointer + pointer_of(path))
        scope = self.scope
        if self.owner is not None and resolver is not self.resolver:
            scope = self.owner.bind(scope, str(resolver._base_uri))
        return Location(value, resolver, self.pointer + pointer_of(path), self.spec, scope,
                        self.owner)

    def children(self, keyword: str) -> Iterator[tuple[str | int, "Location"]]:
        """(key or index, location) of each subschema in a mapping or list keyword."""
        value = self.contents[keyword]
        keys = value.keys() if isinstance(value, dict) else range(len(value))
        for k in keys:
            yield k, self.child(keyword, k)


class Resolver:
    """Resolves `$ref` / `$dynamicRef` from a location; registry = the document + the caller's."""

    def __init__(self, schema: Any, registry: referencing.Registry | None = None) -> None:
        self.dialect = dialect_of(schema)
        self.spec = (referencing.jsonschema.specification_with(str(schema["$schema"]))
                     if isinstance(schema, dict) and "$schema" in schema else DRAFT202012)
        resource = self.spec.create_resource(schema)
        self.base = resource.id() or ROOT_URI
        # The metaschemas ship with jsonschema (no network): `$ref` to them resolves locally.
        base_registry = SPECIFICATIONS if registry is None else registry.combine(SPECIFICATIONS)
        registry = base_registry.with_resource(self.base, resource)
        try:
            registry = registry.crawl()
        except (TypeError, AttributeError):
            # referencing's draft 4-7 crawlers trip over boolean subschemas and dependency
            # lists; uncrawled, references are still resolved lazily (pointers, root anchors)
            pass
        self.registry = registry
        root_resolver = self.registry.resolver(base_uri=self.base)
        self.dynamic_names = _dynamic_ref_names(schema)
        self._bindings: dict[tuple, tuple] = {}
        self.root = Location(schema, root_resolver, "", self.spec,
                             self.bind((), str(root_resolver._base_uri)), self)
        self._pointers: dict[int, str] = {}
        self._index(schema, "")
        self._known = {urldefrag(uri)[0] for uri in self.registry}
        self._anchors: tuple[dict[str, int], bool] | None = None

    def _index(self, value: Any, pointer: str) -> None:
        """Pointers of every dict/list in the document, so a resolved target can be named."""
        if isinstance(value, dict):
            self._pointers.setdefault(id(value), pointer)
            for k, v in value.items():
                self._index(v, pointer + "/" + _escape(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._index(v, f"{pointer}/{i}")

    def _dynamic_anchors(self) -> tuple[dict[str, int], bool]:
        """(how many resources registered define each $dynamicAnchor name, whether any has
        `$recursiveAnchor: true`) — walked once, only when a dynamic reference needs it."""
        if self._anchors is None:
            counts: dict[str, int] = {}
            recursive = False
            seen: set[int] = set()
            stack = [self.registry.contents(uri) for uri in self.registry]
            while stack:
                value = stack.pop()
                if isinstance(value, list):
                    stack.extend(value)
                elif isinstance(value, dict) and id(value) not in seen:
                    seen.add(id(value))
                    name = value.get("$dynamicAnchor")
                    if isinstance(name, str):
                        counts[name] = counts.get(name, 0) + 1
                    recursive = recursive or value.get("$recursiveAnchor") is True
                    stack.extend(value.values())
            self._anchors = (counts, recursive)
        return self._anchors

    def has_recursive_anchor(self) -> bool:
        return self._dynamic_anchors()[1]

    def lookup(self, loc: Location, keyword: str) -> Location:
        """The location `loc[keyword]` ($ref or $dynamicRef) points to."""
        ref = loc.contents[keyword]
        where = loc.pointer + "/" + keyword
        name = urldefrag(ref)[1]
        if keyword == "$dynamicRef" and name not in self.dynamic_names:
            # (a reference in another registered document) exact without the dynamic scope
            # when at most one resource defines the anchor
            if self._dynamic_anchors()[0].get(name, 0) > 1:
                raise UnsupportedSchemaError(
                    "$dynamicRef", f"anchor {name!r} is defined by several resources: resolving it "
                    "needs the dynamic scope, which structgen does not track", where)
        try:
            resolved = loc.resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as e:
            base = str(loc.resolver._base_uri)
            target = urldefrag(base if ref.startswith("#") else urljoin(base, ref))[0]
            if target not in self._known:
                raise UnsupportedSchemaError(
                    keyword, f"remote reference {ref!r} is not fetched (structgen never uses the "
                    "network); pass registry=referencing.Registry(...) holding it", where) from None
            raise SchemaError(f"unresolvable reference {ref!r}: {e}", where) from None
        contents = resolved.contents
        if (keyword == "$dynamicRef" and name in dict(loc.scope) and isinstance(contents, dict)
                and contents.get("$dynamicAnchor") == name):
            # the static target is a dynamic anchor: the outermost resource in the dynamic
            # scope defining the same anchor wins
            resolved = self.registry.resolver(dict(loc.scope)[name]).lookup("#" + name)
            contents = resolved.contents
        if not isinstance(contents, (dict, bool)):
            raise SchemaError(f"reference {ref!r} does not point to a schema", where)
        pointer = self._pointers.get(id(contents), f"{ref}")
        resolver = _enter(resolved.resolver, contents, self.spec, pointer)
        return Location(contents, resolver, pointer, self.spec,
                        self.bind(loc.scope, str(resolver._base_uri)), self)

    def bind(self, scope: tuple[tuple[str, str], ...], uri: str) -> tuple[tuple[str, str], ...]:
        """The dynamic scope after entering resource `uri`: it becomes the binding of each
        dynamically referenced anchor it defines that has no (outer) binding yet."""
        memo = (scope, uri)
        if memo not in self._bindings:
            bound = dict(scope)
            for name in sorted(self.dynamic_names - bound.keys()):
                try:
                    anchor = self.registry.anchor(uri, name).value
                except referencing.exceptions.Unresolvable:
                    continue
                if isinstance(anchor, referencing.jsonschema.DynamicAnchor):
                    bound[name] = uri
            self._bindings[memo] = tuple(sorted(bound.items()))
        return self._bindings[memo]



def _enter(resolver: Any, value: Any, spec: Any, pointer: str) -> Any:
    """The resolver inside `value` (at `pointer`): a new base URI where it has an id (`$id`,
    draft 4 `id`). An id that is not a string is refused: the metaschema only sees it where
    a keyword leads, not under unknown keywords that a `$ref` reaches."""
    if isinstance(value, dict) and ("$id" in value or "id" in value):
        try:
            return resolver.in_subresource(spec.create_resource(value))
        except (AttributeError, TypeError):
            name = "$id" if "$id" in value else "id"
            raise SchemaError(f"invalid schema: {name} {value[name]!r} is not a string",
                              f"{pointer}/{name}") from None
    return resolver


def _dynamic_ref_names(schema: Any) -> frozenset[str]:
    """Anchor names `$dynamicRef`s of the document point to (their scope is tracked)."""
    names: set[str] = set()
    stack = [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            ref = value.get("$dynamicRef")
            if isinstance(ref, str):
                names.add(urldefrag(ref)[1])
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return frozenset(names)
