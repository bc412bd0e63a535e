"""Loading a JSON Schema: metaschema validation, locations and `$ref` resolution.

A `Location` is one subschema together with the resolver that knows its base URI (so relative
references inside it resolve correctly) and its JSON pointer (so errors say where). References
are resolved with `referencing` against the document itself plus whatever the caller's
`referencing.Registry` holds: no retrieval function is installed, so a remote reference is never
fetched — it is refused unless the caller registered it (structgen never touches the network).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urldefrag, urljoin

import jsonschema
import referencing
import referencing.exceptions
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing.jsonschema import DRAFT202012

from ..errors import SchemaError, UnsupportedSchemaError

ROOT_URI = "urn:structgen:root"
_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


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


def check_schema(schema: Any) -> None:
    """Validate against the draft 2020-12 metaschema; SchemaError with the validator's message
    and the pointer of the offending subschema."""
    if not isinstance(schema, (dict, bool)):
        raise SchemaError(f"a schema must be an object or a boolean, not {type(schema).__name__}")
    if isinstance(schema, dict) and "$schema" in schema:
        dialect = str(schema["$schema"]).rstrip("#")
        if dialect != _DRAFT_2020_12:
            raise UnsupportedSchemaError("$schema", f"only draft 2020-12 is supported, not {dialect}",
                                         "")
    validator = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    error = jsonschema.exceptions.best_match(validator.iter_errors(schema))
    if error is not None:
        raise SchemaError(f"invalid schema: {error.message}", pointer_of(error.absolute_path))


@dataclass(frozen=True, eq=False)
class Location:
    """One subschema: its value, the resolver for its base URI, and where it is (for errors)."""

    contents: Any
    resolver: Any = field(repr=False)  # referencing's Resolver
    pointer: str

    @property
    def key(self) -> tuple[int, str]:
        """Identity of this subschema: the same dict under the same base URI is the same node."""
        return (id(self.contents), str(self.resolver._base_uri))

    def child(self, *path: str | int) -> "Location":
        """The subschema at `path` below this one (entering a new base URI at an `$id`)."""
        value = self.contents
        for p in path:
            value = value[p]
        resolver = self.resolver
        if isinstance(value, dict) and "$id" in value:
            resolver = resolver.in_subresource(DRAFT202012.create_resource(value))
        return Location(value, resolver, self.pointer + pointer_of(path))

    def children(self, keyword: str) -> Iterator[tuple[str | int, "Location"]]:
        """(key or index, location) of each subschema in a mapping or list keyword."""
        value = self.contents[keyword]
        keys = value.keys() if isinstance(value, dict) else range(len(value))
        for k in keys:
            yield k, self.child(keyword, k)


class Resolver:
    """Resolves `$ref` / `$dynamicRef` from a location; registry = the document + the caller's."""

    def __init__(self, schema: Any, registry: referencing.Registry | None = None) -> None:
        resource = DRAFT202012.create_resource(schema)
        self.base = resource.id() or ROOT_URI
        # The metaschemas ship with jsonschema (no network): `$ref` to them resolves locally.
        base_registry = SPECIFICATIONS if registry is None else registry.combine(SPECIFICATIONS)
        self.registry = base_registry.with_resource(self.base, resource).crawl()
        root_resolver = self.registry.resolver(base_uri=self.base)
        self.root = Location(schema, root_resolver, "")
        self._pointers: dict[int, str] = {}
        self._index(schema, "")
        self._known = {urldefrag(uri)[0] for uri in self.registry}
        self._dynamic_anchors = self._collect_dynamic_anchors()

    def _index(self, value: Any, pointer: str) -> None:
        """Pointers of every dict/list in the document, so a resolved target can be named."""
        if isinstance(value, dict):
            self._pointers.setdefault(id(value), pointer)
            for k, v in value.items():
                self._index(v, pointer + "/" + _escape(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._index(v, f"{pointer}/{i}")

    def _collect_dynamic_anchors(self) -> dict[str, int]:
        """How many resources (of everything registered) define each $dynamicAnchor name."""
        counts: dict[str, int] = {}
        seen: set[int] = set()

        def walk(value: Any) -> None:
            if isinstance(value, dict):
                if id(value) in seen:
                    return
                seen.add(id(value))
                name = value.get("$dynamicAnchor")
                if isinstance(name, str):
                    counts[name] = counts.get(name, 0) + 1
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        for uri in self.registry:
            walk(self.registry.contents(uri))
        return counts

    def lookup(self, loc: Location, keyword: str) -> Location:
        """The location `loc[keyword]` ($ref or $dynamicRef) points to."""
        ref = loc.contents[keyword]
        where = loc.pointer + "/" + keyword
        if keyword == "$dynamicRef":
            # Exact without tracking the dynamic scope when at most one resource defines the
            # anchor: every scope then resolves to the same place as the static reference.
            name = urldefrag(ref)[1]
            if self._dynamic_anchors.get(name, 0) > 1:
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
        if not isinstance(contents, (dict, bool)):
            raise SchemaError(f"reference {ref!r} does not point to a schema", where)
        pointer = self._pointers.get(id(contents), f"{ref}")
        resolver = resolved.resolver
        if isinstance(contents, dict) and "$id" in contents:
            resolver = resolver.in_subresource(DRAFT202012.create_resource(contents))
        return Location(contents, resolver, pointer)

