"""JSON Schema support: compile a schema into a grammar whose terminals are exact byte DFAs.

Each JSON string or number value in a generated document is one grammar terminal; its language
(every valid JSON spelling of every value the schema allows) is built by ``lexemes`` (strings,
numbers, literals) and ``formats`` (the ``format`` keyword), so the constraint never admits a
document the schema rejects and refuses with ``UnsupportedSchemaError`` where it cannot be exact.
"""
from .compile import compile_schema

__all__ = ["compile_schema"]
