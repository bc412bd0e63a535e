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
