"""structgen: constrained generation with language models.

Pipeline: vocabulary (token bytes, trie) → automata (regex → byte DFA; Lark grammar → CFG +
terminal DFAs; Earley parser) → constraints
(token automata with cached masks) → decoding (sampling, decode loop) → API (this module, CLI).
"""
from .constraints.base import Constraint, TokenAutomaton
from .constraints.grammar import Grammar
from .constraints.json_schema import JsonSchema
from .constraints.regex import Regex
from .decoding.loop import GenerationResult, GenerationStats, generate
from .errors import (
    GenerationError,
    GrammarError,
    ModelProvisionError,
    RegexError,
    RegexSyntaxError,
    SchemaError,
    StructgenError,
    UnsupportedRegexError,
    UnsupportedSchemaError,
)
from .matcher import Matcher
from .models import LoadedModel, load_model
from .vocab.token_bytes import Vocabulary

__all__ = [
    "Constraint",
    "GenerationError",
    "GenerationResult",
    "GenerationStats",
    "Grammar",
    "GrammarError",
    "JsonSchema",
    "LoadedModel",
    "Matcher",
    "ModelProvisionError",
    "Regex",
    "RegexError",
    "RegexSyntaxError",
    "SchemaError",
    "StructgenError",
    "TokenAutomaton",
    "UnsupportedRegexError",
    "UnsupportedSchemaError",
    "Vocabulary",
    "generate",
    "load_model",
]
__version__ = "0.1.0"
