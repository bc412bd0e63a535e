"""Exceptions raised by structgen.

Every error a user can cause (a bad pattern, a model that cannot be provisioned) gets its own
class so callers can catch it precisely, and its message names where the problem is.
"""
from __future__ import annotations


class StructgenError(Exception):
    """Base class of every structgen error."""


class RegexError(StructgenError, ValueError):
    """A regular expression that structgen cannot compile.

    `pattern` is the offending pattern and `position` the 0-based index of the problem in it
    (None when it cannot be pinned down).
    """

    def __init__(self, message: str, pattern: str, position: int | None = None) -> None:
        self.pattern = pattern
        self.position = position
        where = f" at position {position}" if position is not None else ""
        pointer = ""
        if position is not None:
            pointer = f"\n  {pattern}\n  {' ' * position}^"
        super().__init__(f"{message}{where} in regex {pattern!r}{pointer}")


class RegexSyntaxError(RegexError):
    """The pattern is not a valid regular expression."""


class UnsupportedRegexError(RegexError):
    """The pattern is valid Python regex syntax but uses a construct that no finite automaton
    can enforce exactly (backreferences, lookarounds, word boundaries...)."""

    def __init__(self, construct: str, pattern: str, position: int | None = None) -> None:
        self.construct = construct
        super().__init__(f"unsupported construct: {construct}", pattern, position)


class ModelProvisionError(StructgenError, RuntimeError):
    """A model could not be downloaded, converted or loaded."""


class GenerationError(StructgenError, RuntimeError):
    """Generation cannot proceed (e.g. the constraint admits no token at the first step)."""


class GrammarError(StructgenError, ValueError):
    """A grammar that structgen cannot compile exactly; `line`/`column` locate the problem
    in the grammar text when known (1-based)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        where = ""
        if line is not None:
            where = f" (line {line}" + (f", column {column}" if column is not None else "") + ")"
        super().__init__(message + where)


class SchemaError(StructgenError, ValueError):
    """A JSON Schema that is invalid (per its metaschema) or cannot be loaded; `pointer` is the
    JSON pointer of the offending place in the schema ("" = the root)."""

    def __init__(self, message: str, pointer: str = "") -> None:
        self.pointer = pointer
        self.reason = message
        super().__init__(f"{message} (at {pointer or '/'} in the schema)" if pointer is not None
                         else message)

    def at(self, pointer: str) -> "SchemaError":
        """The same error located at `pointer` (used when re-raising from nested compilation)."""
        err = type(self).__new__(type(self))
        err.__dict__.update(self.__dict__)
        SchemaError.__init__(err, self.reason, pointer)
        return err


class UnsupportedSchemaError(SchemaError):
    """A valid schema using a keyword (or keyword combination) structgen cannot enforce exactly.

    `keyword` names it and `pointer` locates it; `JsonSchema(..., lenient=True)` drops such
    keywords instead and reports them as warnings — never silently."""

    def __init__(self, keyword: str, message: str, pointer: str = "") -> None:
        self.keyword = keyword
        super().__init__(f"unsupported keyword {keyword!r}: {message}", pointer)
