"""Uniform adapters over structgen and its peers, for the benchmarks in bench/.

Every engine exposes the same two-level interface::

    eng = ENGINES["xgrammar"](vocab)     # per-vocabulary setup (timed separately)
    c = eng.compile(pattern)             # per-pattern compilation
    c = eng.compile_grammar(lark_text)   # per-grammar compilation (Lark syntax; engines
                                         # without grammar support raise NotImplementedError)
    m = eng.matcher(c)                   # a fresh matcher at the start state
    m.mask()                             # compute the next-token mask in the engine's
                                         # native form (timed by the benchmarks)
    m.allowed()                          # the last mask as a torch.bool tensor [width]
                                         # (conversion, never timed)
    m.consume(token_id) -> bool

``vocab`` is a :class:`BenchVocab`: the Hugging Face tokenizer, the logits width
and one ``bytes`` string per token id (``None`` for special tokens), decoded
here independently of every engine, so that all of them can be given the same
tokens.

Peers are optional: :func:`available_engines` lists the ones that import, with
the reason for each one that does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

# ---------------------------------------------------------------------------
# Vocabulary: token id -> bytes, decoded from the HF tokenizer
# ---------------------------------------------------------------------------


def _gpt2_byte_decoder() -> Dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode (byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _decoder_kind(tokenizer) -> str:
    """'byte_level' (GPT-2 style), 'sentencepiece' (▁ + <0xXX>) or 'raw'."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        dec = json.dumps(spec.get("decoder"))
        if '"ByteLevel"' in dec:
            return "byte_level"
        if "\\u2581" in dec or "▁" in dec or '"ByteFallback"' in dec or '"Metaspace"' in dec:
            return "sentencepiece"
        return "raw"
    vocab = tokenizer.get_vocab()
    if any("Ġ" in t for t in list(vocab)[:5000]):
        return "byte_level"
    if any("▁" in t for t in list(vocab)[:5000]):
        return "sentencepiece"
    return "raw"


def token_bytes_table(tokenizer, width: int) -> List[Optional[bytes]]:
    """One entry per id in [0, width): the token's bytes, or None for special /
    unused ids (ids the tokenizer does not know, special added tokens)."""
    kind = _decoder_kind(tokenizer)
    table: List[Optional[bytes]] = [None] * width
    special = set(tokenizer.all_special_ids)
    added = {}
    for tid, tok in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if tok.special:
            special.add(tid)
        else:
            added[tid] = tok.content
    byte_dec = _gpt2_byte_decoder() if kind == "byte_level" else None
    for text, tid in tokenizer.get_vocab().items():
        if tid >= width or tid in special:
            continue
        if tid in added:
            table[tid] = added[tid].encode("utf-8")
            continue
        if kind == "byte_level":
            try:
                table[tid] = bytes(byte_dec[ch] for ch in text)
            except KeyError:  # not in the byte alphabet: raw text
                table[tid] = text.encode("utf-8")
        elif kind == "sentencepiece":
            m = _BYTE_FALLBACK.match(text)
            table[tid] = bytes([int(m.group(1), 16)]) if m else text.replace("▁", " ").encode("utf-8")
        else:
            table[tid] = text.encode("utf-8")
    return table


@dataclass
class BenchVocab:
    name: str
    tokenizer: object
    width: int  # logits width (model vocab size)
    eos_id: int
    token_bytes: List[Optional[bytes]]
    loaded: object = None  # structgen LoadedModel when available
    _normal: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def normal_mask(self) -> torch.Tensor:
        """torch.bool [width]: ids with a byte string (not special, not unused)."""
        if self._normal is None:
            self._normal = torch.tensor([b is not None for b in self.token_bytes], dtype=torch.bool)
        return self._normal

    def encode(self, text: str) -> List[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def detok(self, ids: Sequence[int]) -> Optional[bytes]:
        parts = [self.token_bytes[i] if 0 <= i < self.width else None for i in ids]
        if any(p is None for p in parts):
            return None
        return b"".join(parts)


def make_vocab(name: str, tokenizer, width: Optional[int] = None, loaded=None) -> BenchVocab:
    if width is None:
        width = len(tokenizer)
    eos = tokenizer.eos_token_id
    return BenchVocab(name, tokenizer, int(width), int(eos), token_bytes_table(tokenizer, int(width)), loaded)


# ---------------------------------------------------------------------------
# Bitmask helpers (int32 words, bit i of word w = token 32*w+i)
# ---------------------------------------------------------------------------

_SHIFTS = torch.arange(32, dtype=torch.int32)


def bitmask_to_bool(bitmask: torch.Tensor, width: int) -> torch.Tensor:
    words = bitmask.reshape(-1)
    bits = (words.unsqueeze(-1) >> _SHIFTS) & 1
    return bits.reshape(-1)[:width].bool()


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------


class Engine:
    name = "?"
    mask_form = "?"

    def __init__(self, vocab: BenchVocab):
        self.vocab = vocab

    supports_grammar = False

    def compile(self, pattern: str):
        raise NotImplementedError

    def compile_grammar(self, lark_text: str):
        """Compile a grammar written in Lark syntax (start rule `start`)."""
        raise NotImplementedError(f"{self.name} has no context-free grammar support")

    def matcher(self, compiled):
        raise NotImplementedError

    def clear_cache(self) -> None:
        """Forget per-pattern caches, if the engine has any."""


# -- structgen ---------------------------------------------------------------


class _StructgenMatcher:
    def __init__(self, m, width):
        self._m = m
        self._width = width
        self._last = None

    def mask(self):
        self._last = self._m.mask()
        return self._last

    def allowed(self) -> torch.Tensor:
        out = self._last.reshape(-1).bool()
        if out.numel() != self._width:  # pad / cut to the logits width
            full = torch.zeros(self._width, dtype=torch.bool)
            n = min(self._width, out.numel())
            full[:n] = out[:n]
            out = full
        return out

    def consume(self, tok: int) -> bool:
        return bool(self._m.consume(int(tok)))

    def is_accepting(self) -> bool:
        return bool(self._m.is_accepting())

    @property
    def automaton(self):
        """The structgen TokenAutomaton (GrammarAutomaton for grammars: has `.profile`)."""
        return self._m.automaton

    def state(self) -> str:
        for attr in ("state", "_state", "states"):
            if hasattr(self._m, attr):
                try:
                    return repr(getattr(self._m, attr))[:200]
                except Exception:  # pragma: no cover - best effort only
                    pass
        return "?"


class StructgenEngine(Engine):
    name = "structgen"
    mask_form = "torch.bool [width]"

    def __init__(self, vocab: BenchVocab):
        super().__init__(vocab)
        import structgen

        self._sg = structgen
        # Matcher accepts a LoadedModel, a structgen Vocabulary or an HF tokenizer.
        self._target = vocab.loaded if vocab.loaded is not None else vocab.tokenizer

    supports_grammar = True

    def compile(self, pattern: str):
        return self._sg.Regex(pattern)

    def compile_grammar(self, lark_text: str):
        # Lark text -> CFG + terminal byte DFAs here; the grammar automaton (per vocabulary)
        # is built by the first Matcher and its states and masks are built lazily by mask().
        return self._sg.Grammar(lark_text)

    def clear_cache(self) -> None:
        # structgen memoises pattern -> byte DFA (functools.lru_cache), and equal constraints
        # made again share their compiled form and automata (per-state masks) until
        # forget_shared().
        try:
            from structgen.automata.regex import regex_to_dfa

            regex_to_dfa.cache_clear()
        except (ImportError, AttributeError):
            pass
        try:
            from structgen.constraints.base import forget_shared

            forget_shared()
        except ImportError:
            pass

    def matcher(self, compiled):
        return _StructgenMatcher(self._sg.Matcher(compiled, self._target), self.vocab.width)


# -- xgrammar ----------------------------------------------------------------


class _XgrMatcher:
    def __init__(self, xgr, compiled, width):
        self._m = xgr.GrammarMatcher(compiled)
        self._bm = xgr.allocate_token_bitmask(1, width)
        self._width = width

    def mask(self):
        self._m.fill_next_token_bitmask(self._bm)
        return self._bm

    def allowed(self) -> torch.Tensor:
        return bitmask_to_bool(self._bm, self._width)

    def consume(self, tok: int) -> bool:
        return bool(self._m.accept_token(int(tok)))

    def is_accepting(self) -> bool:
        return bool(self._m.is_completed())

    def state(self) -> str:
        try:
            return " ".join(self._m._debug_print_internal_state().split())[:300]
        except Exception:
            return "?"


class XgrammarEngine(Engine):
    name = "xgrammar"
    mask_form = "int32 bitmask"

    def __init__(self, vocab: BenchVocab):
        super().__init__(vocab)
        import xgrammar as xgr

        self._xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(
            vocab.tokenizer, vocab_size=vocab.width, stop_token_ids=[vocab.eos_id]
        )
        self.compiler = xgr.GrammarCompiler(self.info, cache_enabled=True)

    supports_grammar = True

    def compile(self, pattern: str):
        return self.compiler.compile_regex(pattern)

    def compile_grammar(self, lark_text: str):
        # xgrammar >= 0.2 imports Lark syntax itself (Grammar.from_lark / compile_lark):
        # terminals become character-level rules, %ignore is inserted between symbols.
        return self.compiler.compile_lark(lark_text)

    def matcher(self, compiled):
        return _XgrMatcher(self._xgr, compiled, self.vocab.width)

    def clear_cache(self) -> None:
        self.compiler.clear_cache()


# -- outlines-core -----------------------------------------------------------


class _OutlinesMatcher:
    def __init__(self, oc, index, width):
        self._g = oc.Guide(index)
        self._bm = torch.zeros((width + 31) // 32, dtype=torch.int32)
        self._ptr = self._bm.data_ptr()
        self._n = self._bm.numel()
        self._width = width

    def mask(self):
        self._g.write_mask_into(self._ptr, self._n, 4)
        return self._bm

    def allowed(self) -> torch.Tensor:
        return bitmask_to_bool(self._bm, self._width)

    def consume(self, tok: int) -> bool:
        try:
            self._g.advance(int(tok), return_tokens=False)
            return True
        except Exception:
            return False

    def is_accepting(self) -> bool:
        return bool(self._g.is_finished())

    def state(self) -> str:
        return f"dfa_state={self._g.get_state()}"


class OutlinesCoreEngine(Engine):
    name = "outlines-core"
    mask_form = "int32 bitmask"

    def __init__(self, vocab: BenchVocab):
        super().__init__(vocab)
        import outlines_core as oc

        self._oc = oc
        groups: Dict[bytes, List[int]] = {}
        for tid, b in enumerate(vocab.token_bytes):
            if b is None or b == b"" or tid == vocab.eos_id:
                continue
            groups.setdefault(b, []).append(tid)
        self.ocvocab = oc.Vocabulary(vocab.eos_id, groups)

    def compile(self, pattern: str):
        return self._oc.Index(pattern, self.ocvocab)

    def matcher(self, compiled):
        return _OutlinesMatcher(self._oc, compiled, self.vocab.width)


# -- llguidance --------------------------------------------------------------


class _LlgMatcher:
    def __init__(self, llg, tok, grammar, width):
        self._llg = llg
        self._m = llg.LLMatcher(tok, grammar, log_level=0)
        if self._m.is_error():
            raise ValueError(self._m.get_error())
        from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

        self._fill = fill_next_token_bitmask
        self._bm = allocate_token_bitmask(1, width)
        self._width = width

    def mask(self):
        self._fill(self._m, self._bm, 0)
        return self._bm

    def allowed(self) -> torch.Tensor:
        return bitmask_to_bool(self._bm, self._width)

    def consume(self, tok: int) -> bool:
        return bool(self._m.consume_token(int(tok)))

    def is_accepting(self) -> bool:
        return bool(self._m.is_accepting())

    def forced_bytes(self) -> bytes:
        """Bytes llguidance considers forced next (it allows only their canonical token)."""
        try:
            return bytes(self._m.compute_ff_bytes())
        except Exception:
            return b""

    def state(self) -> str:
        if self._m.is_error():
            return "error: " + self._m.get_error()
        ff = self.forced_bytes()
        return f"forced={ff!r}" if ff else "?"


class LlguidanceEngine(Engine):
    name = "llguidance"
    mask_form = "int32 bitmask"

    def __init__(self, vocab: BenchVocab):
        super().__init__(vocab)
        import llguidance
        import llguidance.hf

        self._llg = llguidance
        self.tok = llguidance.hf.from_tokenizer(vocab.tokenizer, n_vocab=vocab.width, eos_token=vocab.eos_id)

    supports_grammar = True

    def compile(self, pattern: str):
        # The grammar string is cheap to build; the real work (lexer, token
        # trie walk) happens lazily in LLMatcher and the first mask.
        return self._llg.LLMatcher.grammar_from_regex(pattern)

    def compile_grammar(self, lark_text: str):
        # grammar_from_lark never raises (it only wraps the text): the grammar is compiled,
        # and errors raised, by LLMatcher() (in matcher()), which a cold compile includes.
        # (LLMatcher.validate_grammar would compile it a second time, so it is not called.)
        return self._llg.LLMatcher.grammar_from_lark(lark_text)

    def matcher(self, compiled):
        return _LlgMatcher(self._llg, self.tok, compiled, self.vocab.width)


ENGINE_CLASSES: Dict[str, Callable[[BenchVocab], Engine]] = {
    "structgen": StructgenEngine,
    "xgrammar": XgrammarEngine,
    "outlines-core": OutlinesCoreEngine,
    "llguidance": LlguidanceEngine,
}

_MODULES = {
    "structgen": "structgen",
    "xgrammar": "xgrammar",
    "outlines-core": "outlines_core",
    "llguidance": "llguidance",
}


def available_engines(names: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """(importable engine names, {name: why skipped})."""
    import importlib

    ok, skipped = [], {}
    for n in names:
        if n not in ENGINE_CLASSES:
            skipped[n] = "unknown engine"
            continue
        try:
            mod = importlib.import_module(_MODULES[n])
            if n == "structgen" and not (hasattr(mod, "Regex") and hasattr(mod, "Matcher")):
                raise ImportError("structgen has no Regex/Matcher yet")
            ok.append(n)
        except Exception as e:  # ImportError, or a half-written package
            skipped[n] = f"{type(e).__name__}: {e}"
    return ok, skipped


# ---------------------------------------------------------------------------
# JSON Schema (bench/maskbench.py): the peers as engines of structgen.schema.conformance
# ---------------------------------------------------------------------------


def _bit_set(bitmask: torch.Tensor, token_id: int) -> bool:
    """Whether an int32 bitmask allows `token_id` (one lookup, no full conversion)."""
    word = int(bitmask.reshape(-1)[token_id >> 5])
    return bool((word >> (token_id & 31)) & 1)


class _JsonPeerMatcher:
    """A peer matcher with the conformance runner's `allows(mask, id)`."""

    def __init__(self, m) -> None:
        self._m = m

    def mask(self):
        return self._m.mask()

    def consume(self, token_id: int) -> bool:
        return self._m.consume(token_id)

    def is_accepting(self) -> bool:
        return self._m.is_accepting()

    def allows(self, mask, token_id: int) -> bool:
        return _bit_set(mask, token_id)


class JsonSchemaPeer:
    """xgrammar or llguidance compiling JSON schemas with their default options.

    xgrammar: ``GrammarCompiler.compile_json_schema(schema)`` (any_whitespace=True,
    strict_mode=True: no properties or items beyond those the schema lists, any_order=False);
    its compiled-grammar cache is cleared before every schema, so each compile is cold.
    llguidance: ``LLMatcher.grammar_from_json_schema(schema)`` (flexible whitespace, strict: it
    reports unsupported keywords); the grammar is compiled by ``LLMatcher()``, so an error
    there is the refusal. Any exception while compiling counts as a refusal (the peer's message).
    """

    def __init__(self, engine: Engine) -> None:
        if engine.name not in ("xgrammar", "llguidance"):
            raise ValueError(f"no JSON Schema adapter for {engine.name}")
        self.engine = engine
        self.name = engine.name

    def compile(self, schema, *, format_assertion: bool = True):
        import json

        from structgen.schema.conformance import Refused, one_line

        try:
            if self.name == "xgrammar":
                self.engine.clear_cache()
                return self.engine.compiler.compile_json_schema(json.dumps(schema))
            return self.engine._llg.LLMatcher.grammar_from_json_schema(schema)
        except Exception as e:  # the peer's refusal, whatever it raises
            raise Refused(one_line(e)) from e

    def matcher(self, compiled) -> _JsonPeerMatcher:
        from structgen.schema.conformance import Refused, one_line

        try:
            return _JsonPeerMatcher(self.engine.matcher(compiled))
        except Exception as e:  # llguidance reports grammar errors when the matcher is built
            raise Refused(one_line(e)) from e
