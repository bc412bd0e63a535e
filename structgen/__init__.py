"""structgen: constrained generation with language models.

Pipeline: vocabulary (token bytes, trie) → automata (regex → byte DFA; Lark grammar → CFG +
terminal DFAs; Earley parser) → constraints
(token automata with cached masks) → decoding (sampling, decode loop) → API (this module, CLI).
"""
from .constraints.base import Constraint, TokenAutomaton
from .constraints.grammar import Grammar
from .constraints.regex import Regex
from .decoding.loop import GenerationResult, GenerationStats, generate
from .errors import (
    GenerationError,
    GrammarError,
    ModelProvisionError,
    RegexError,
    RegexSyntaxError,
    StructgenError,
    UnsupportedRegexError,
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
    "LoadedModel",
    "Matcher",
    "ModelProvisionError",
    "Regex",
    "RegexError",
    "RegexSyntaxError",
    "StructgenError",
    "TokenAutomaton",
    "UnsupportedRegexError",
    "Vocabulary",
    "generate",
    "load_model",
]
__version__ = "0.1.0"
