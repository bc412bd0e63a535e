"""The exact bytes every token id contributes to generated text.

Constraints are checked on bytes, so each token must map to precisely the bytes the tokenizer's
decoder would emit for it in the middle of a sequence. We derive them per token from the vocabulary
strings and the decoder's definition (never by decoding tokens one at a time, which is slow and
loses partial UTF-8 sequences), and refuse decoders we cannot reproduce exactly.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["Vocabulary"]

# SentencePiece's word-boundary marker, which decoders turn back into a space.
_SPIECE_SPACE = "\u2581"
# A byte-fallback token as tokenizers' ByteFallback decoder recognises it: "<0xNN>".
_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character alphabet used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _byte_level_table() -> dict[int, str]:
    """str.translate table: alphabet characters -> latin-1 character of their byte.

    Characters below 256 that are *not* in the alphabet map to a non-latin-1 character so that
    the latin-1 encode after translation fails, exactly when tokenizers' ByteLevel decoder falls
    back to the token's raw UTF-8.
    """
    table: dict[int, str] = {c: "\u0800" for c in range(256)}
    for b, ch in _bytes_to_unicode().items():
        table[ord(ch)] = chr(b)
    return table


_BYTE_LEVEL = _byte_level_table()


def _byte_level_bytes(token: str) -> bytes:
    """ByteLevel decoder: map every character back to its byte; a token holding any character
    outside the alphabet (e.g. an added token like "€") is emitted as its raw UTF-8 instead."""
    try:
        return token.translate(_BYTE_LEVEL).encode("latin-1")
    except UnicodeEncodeError:
        return token.encode("utf-8")


def _sequence_converter(steps: list[dict[str, Any]]) -> Callable[[str], bytes]:
    """Per-token converter for a `Sequence` decoder made of Replace*, ByteFallback, Fuse, Strip.

    This is the SentencePiece family (Gemma, Llama, Mistral...). Replace runs per token before
    ByteFallback, so we apply it the same way; Fuse only joins strings. A Strip placed after Fuse
    removes a leading space from the *whole* decoded text (the "prefix space" of a sentence): it is
    a property of position 0, not of any token, so token bytes are the in-context bytes and it is
    ignored here.
    """
    replacements: list[tuple[str, str]] = []
    byte_fallback = False
    fused = False
    for step in steps:
        kind = step.get("type")
        if kind == "Replace" and not byte_fallback and not fused:
            pattern = step.get("pattern", {})
            if "String" not in pattern:
                raise ValueError(f"unsupported tokenizer decoder: Replace with a regex pattern {pattern!r}")
            replacements.append((pattern["String"], step["content"]))
        elif kind == "ByteFallback" and not byte_fallback and not fused:
            byte_fallback = True
        elif kind == "Fuse" and not fused:
            fused = True
        elif kind == "Strip" and fused and step.get("stop", 0) == 0 and step.get("content") == " ":
            pass
        else:
            raise ValueError(
                f"unsupported tokenizer decoder: {kind!r} at this position of a Sequence decoder "
                f"({[s.get('type') for s in steps]}); cannot map its tokens to bytes exactly"
            )

    def convert(token: str) -> bytes:
        for old, new in replacements:
            token = token.replace(old, new)
        if byte_fallback and len(token) == 6:
            match = _BYTE_TOKEN.fullmatch(token)
            if match:
                return bytes((int(match.group(1), 16),))
        return token.encode("utf-8")

    return convert


def _metaspace_bytes(replacement: str) -> Callable[[str], bytes]:
    """Metaspace decoder: the replacement character becomes a space. Like Strip, its removal of
    the first token's leading space is positional and not part of the token's bytes."""

    def convert(token: str) -> bytes:
        return token.replace(replacement, " ").encode("utf-8")

    return convert


def _converter_for_decoder(decoder: dict[str, Any] | None) -> Callable[[str], bytes]:
    kind = None if decoder is None else decoder.get("type")
    if kind == "ByteLevel":
        return _byte_level_bytes
    if kind == "Sequence":
        return _sequence_converter(list(decoder["decoders"]))  # type: ignore[index]
    if kind == "Metaspace":
        return _metaspace_bytes(decoder.get("replacement", _SPIECE_SPACE))  # type: ignore[union-attr]
    raise ValueError(f"unsupported tokenizer decoder type {kind!r}: cannot map its tokens to bytes exactly")


def _converter_for(tokenizer: PreTrainedTokenizerBase) -> tuple[Callable[[str], bytes], set[int]]:
    """Pick the per-token conversion from the tokenizer's decoder definition; also return ids the
    tokenizer's model itself marks as having no content (not listed as added special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        decoder = backend.decoder
        return _converter_for_decoder(None if decoder is None else json.loads(decoder.__getstate__())), set()
    # Python ("slow") tokenizers: the two families whose decoding is a per-token map.
    if isinstance(getattr(tokenizer, "byte_decoder", None), dict):
        return _byte_level_bytes, set()
    sp = getattr(tokenizer, "sp_model", None)
    if sp is not None:
        convert = _sequence_converter([{"type": "Replace", "pattern": {"String": _SPIECE_SPACE}, "content": " "},
                                       {"type": "ByteFallback"}, {"type": "Fuse"}])
        empty = {i for i in range(sp.get_piece_size()) if sp.IsControl(i) or sp.IsUnknown(i) or sp.IsUnused(i)}
        return convert, empty
    raise ValueError(
        f"unsupported tokenizer {type(tokenizer).__name__}: it has no tokenizers backend, byte-level "
        "alphabet or SentencePiece model, so its tokens cannot be mapped to bytes exactly"
    )


def _fingerprint(width: int, token_bytes: tuple[bytes, ...], eos_ids: frozenset[int],
                 special_ids: frozenset[int]) -> str:
    digest = hashlib.sha256()
    digest.update(b"structgen-vocab-v1\0%d\0" % width)
    # Length-prefix every token so different splits of the same bytes hash differently.
    digest.update(b"".join(len(t).to_bytes(4, "little") + t for t in token_bytes))
    digest.update(b"\0eos:" + ",".join(map(str, sorted(eos_ids))).encode())
    digest.update(b"\0special:" + ",".join(map(str, sorted(special_ids))).encode())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Immutable id -> bytes table of a model's output vocabulary.

    `width` is the logits width, which may exceed the tokenizer (padded rows): those ids, like
    every special/control token and every eos id, have no content (b"") and are in
    `special_ids`. `fingerprint` identifies the table for caches keyed on it.
    """

    token_bytes: tuple[bytes, ...] = field(repr=False)
    width: int
    eos_ids: frozenset[int]
    special_ids: frozenset[int] = field(repr=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.token_bytes) != self.width:
            raise ValueError(f"token_bytes has {len(self.token_bytes)} entries but width is {self.width}")
        for name, ids in (("eos_ids", self.eos_ids), ("special_ids", self.special_ids)):
            bad = [i for i in ids if not 0 <= i < self.width]
            if bad:
                raise ValueError(f"{name} outside [0, {self.width}): {sorted(bad)[:5]}")
        object.__setattr__(self, "fingerprint",
                           _fingerprint(self.width, self.token_bytes, self.eos_ids, self.special_ids))

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerBase, width: int | None = None,
                       eos_ids: Iterable[int] | None = None) -> Vocabulary:
        """Build the table for `tokenizer` with `width` rows (default len(tokenizer)).

        eos_ids defaults to tokenizer.eos_token_id (none if it is unset). Raises ValueError for
        tokenizers whose decoder cannot be reproduced token by token.
        """
        convert, special = _converter_for(tokenizer)
        size = len(tokenizer)
        width = size if width is None else width
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        if eos_ids is None:
            eos_ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
        eos = frozenset(int(i) for i in eos_ids)

        special.update(i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special)
        special.update(tokenizer.all_special_ids)
        special.update(eos)
        special = {i for i in special if i < width}

        n = min(size, width)
        strings = tokenizer.convert_ids_to_tokens(list(range(n)))
        table = [b""] * width
        for i, token in enumerate(strings):
            if token is None:  # an id the tokenizer does not define
                special.add(i)
            elif i not in special:
                table[i] = convert(token)
        special.update(range(n, width))
        return cls(tuple(table), width, eos, frozenset(special))

    def decode(self, ids: Iterable[int]) -> bytes:
        """Bytes of a sequence of ids: the concatenation of their token bytes."""
        table = self.token_bytes
        return b"".join(table[i] for i in ids)

    def __len__(self) -> int:
        return self.width

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)
