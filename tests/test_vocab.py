"""Token bytes must reproduce the tokenizer's own decoding exactly, byte for byte."""
from __future__ import annotations

import io
import random
import re

import pytest
import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models
from transformers import PreTrainedTokenizerFast

from structgen.models import LoadedModel
from structgen.vocab import Vocabulary

# Scripts with 2-, 3- and 4-byte UTF-8, combining marks, ZWJ emoji sequences, flags, and rare
# characters (hieroglyphs, math letters) that Gemma can only spell with byte-fallback tokens.
MULTILINGUAL = (
    "Grüße, naïve café — Ελληνικά, русский текст; 日本語のテキスト、中文字符。 한국어 문장. "
    "العربية مكتوبة. हिन्दी पाठ। ไทย emoji: 👩‍👩‍👧‍👦 🇫🇷 👍🏽 🙂 e\u0301 "
    "𓀀𓀁𓂀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ 🫠🪿 \t tabs\n\nnew  lines   spaces"
)
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _decode(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _byte_level_lossy(vocab: Vocabulary, tokenizer, ids: list[int]) -> str:
    """ByteLevel joins all bytes, then from_utf8_lossy: one U+FFFD per maximal invalid subpart,
    which is what Python's "replace" error handler does too."""
    return vocab.decode(ids).decode("utf-8", "replace")


def _byte_fallback_lossy(vocab: Vocabulary, tokenizer, ids: list[int]) -> str:
    """ByteFallback decodes each run of consecutive <0xNN> tokens (after special tokens are
    dropped) as a whole: valid UTF-8 is kept, otherwise the run becomes one U+FFFD *per byte*,
    even for bytes of the run that would be valid on their own."""
    content = [i for i in ids if i not in vocab.special_ids]
    pieces, run = [], []
    for i, token in zip(content, tokenizer.convert_ids_to_tokens(content)):
        if BYTE_TOKEN.fullmatch(token):
            run.append(vocab.token_bytes[i])
            continue
        if run:
            pieces.append(_run_text(b"".join(run)))
            run = []
        pieces.append(vocab.token_bytes[i].decode("utf-8"))
    if run:
        pieces.append(_run_text(b"".join(run)))
    return "".join(pieces)


def _run_text(run: bytes) -> str:
    try:
        return run.decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(run)


CASES = {
    # fixture, width, eos ids, lossy decoding rule of its decoder
    "smollm2": (49152, {2}, _byte_level_lossy),
    "gemma": (262144, {1}, _byte_fallback_lossy),
}


@pytest.fixture(params=[pytest.param("smollm2", marks=pytest.mark.model),
                        pytest.param("gemma", marks=[pytest.mark.model, pytest.mark.gemma])])
def case(request) -> tuple[LoadedModel, int, set[int], object]:
    width, eos, lossy = CASES[request.param]
    return request.getfixturevalue(request.param), width, eos, lossy


def _check(loaded: LoadedModel, lossy, ids: list[int]) -> bool:
    """Assert token bytes agree with tokenizer.decode; return whether the bytes were valid UTF-8."""
    expected = _decode(loaded.tokenizer, ids)
    data = loaded.vocab.decode(ids)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert lossy(loaded.vocab, loaded.tokenizer, ids) == expected, ids
        return False
    assert text == expected, ids
    return True


def test_width_eos_and_specials(case) -> None:
    loaded, width, eos, _ = case
    vocab = loaded.vocab
    assert vocab.width == len(vocab) == len(vocab.token_bytes) == width
    assert vocab.eos_ids == eos
    assert eos <= vocab.special_ids
    assert all(vocab.token_bytes[i] == b"" for i in vocab.special_ids)
    assert set(loaded.tokenizer.all_special_ids) <= vocab.special_ids
    assert re.fullmatch(r"[0-9a-f]{64}", vocab.fingerprint)


def test_random_sequences_match_decode(case) -> None:
    loaded, width, _, lossy = case
    vocab, tokenizer = loaded.vocab, loaded.tokenizer
    rng = random.Random(1234)
    byte_ids = [i for i, t in enumerate(tokenizer.convert_ids_to_tokens(list(range(width)))) if BYTE_TOKEN.fullmatch(t)]
    specials = sorted(vocab.special_ids)
    short = [i for i, b in enumerate(vocab.token_bytes) if 0 < len(b) <= 2]

    def pick() -> int:
        r = rng.random()
        if r < 0.2 and byte_ids:
            return rng.choice(byte_ids)
        if r < 0.3:
            return rng.choice(specials)
        if r < 0.5:
            return rng.choice(short)
        return rng.randrange(width)

    valid = sum(_check(loaded, lossy, [pick() for _ in range(rng.randint(1, 12))]) for _ in range(3000))
    assert 300 < valid < 2700  # both the exact and the lossy comparison were exercised


def test_multilingual_text_split_at_token_boundaries(case) -> None:
    loaded, _, _, lossy = case
    vocab, tokenizer = loaded.vocab, loaded.tokenizer
    ids = tokenizer.encode(MULTILINGUAL, add_special_tokens=False)
    assert vocab.decode(ids) == MULTILINGUAL.encode("utf-8")
    split_inside_char = 0
    for k in range(len(ids) + 1):
        assert vocab.decode(ids[:k]) + vocab.decode(ids[k:]) == MULTILINGUAL.encode("utf-8")
        split_inside_char += not _check(loaded, lossy, ids[:k])
        _check(loaded, lossy, ids[k:])
    assert split_inside_char > 0  # some boundaries really cut a multi-byte character
    rng = random.Random(7)
    for _ in range(500):
        i, j = sorted(rng.sample(range(len(ids) + 1), 2))
        _check(loaded, lossy, ids[i:j])


@pytest.mark.model
@pytest.mark.gemma
def test_gemma_byte_fallback(gemma: LoadedModel) -> None:
    vocab, tokenizer = gemma.vocab, gemma.tokenizer
    ids = tokenizer.encode("𓀀", add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids) == ["<0xF0>", "<0x93>", "<0x80>", "<0x80>"]
    assert [vocab.token_bytes[i] for i in ids] == [b"\xf0", b"\x93", b"\x80", b"\x80"]
    # Quirks of ByteFallback that a naive lossy decode gets wrong: an invalid run becomes one
    # U+FFFD per byte (even its valid "A"), and runs join across skipped special tokens.
    a, e2, x82, xac = (tokenizer.convert_tokens_to_ids(f"<0x{b:02X}>") for b in (0x41, 0xE2, 0x82, 0xAC))
    assert _decode(tokenizer, [a, e2]) == "\ufffd\ufffd" != vocab.decode([a, e2]).decode("utf-8", "replace")
    assert _decode(tokenizer, [e2, 1, x82, xac]) == "€" == vocab.decode([e2, 1, x82, xac]).decode()
    # Non-special added tokens still go through the decoder (here: plain text like "\n\n").
    assert vocab.token_bytes[tokenizer.convert_tokens_to_ids("\n\n")] == b"\n\n"


def test_padded_ids_are_empty_and_special(case) -> None:
    loaded, width, _, _ = case
    tokenizer = loaded.tokenizer
    base = Vocabulary.from_tokenizer(tokenizer)
    padded = Vocabulary.from_tokenizer(tokenizer, width=len(tokenizer) + 64)
    assert padded.width == len(tokenizer) + 64
    assert padded.token_bytes[: len(tokenizer)] == base.token_bytes
    assert padded.token_bytes[len(tokenizer):] == (b"",) * 64
    assert set(range(len(tokenizer), padded.width)) <= padded.special_ids
    assert padded.fingerprint != base.fingerprint
    assert base.eos_ids == {tokenizer.eos_token_id}


def test_from_tokenizer_is_deterministic_and_immutable(smollm2: LoadedModel) -> None:
    a = Vocabulary.from_tokenizer(smollm2.tokenizer, width=smollm2.vocab.width, eos_ids=smollm2.vocab.eos_ids)
    assert a == smollm2.vocab and a.fingerprint == smollm2.vocab.fingerprint
    assert Vocabulary.from_tokenizer(smollm2.tokenizer, eos_ids=[]).fingerprint != a.fingerprint
    with pytest.raises(AttributeError):
        a.width = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="eos_ids"):
        Vocabulary.from_tokenizer(smollm2.tokenizer, eos_ids=[10**6])


def _tiny_fast_tokenizer(decoder) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "a": 1, "▁b": 2, "<0x41>": 3}, unk_token="[UNK]"))
    tokenizer.decoder = decoder
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer)


@pytest.mark.parametrize("decoder, name", [
    (decoders.WordPiece(), "WordPiece"),
    (decoders.BPEDecoder(), "BPEDecoder"),
    (decoders.CTC(), "CTC"),
    (decoders.Sequence([decoders.Replace(Regex("b+"), "c")]), "Replace"),
    (decoders.Sequence([decoders.ByteFallback(), decoders.Replace("▁", " ")]), "Replace"),
    (None, "None"),
])
def test_unsupported_decoders_raise(decoder, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Vocabulary.from_tokenizer(_tiny_fast_tokenizer(decoder))


def test_positional_prefix_space_strip_is_not_part_of_token_bytes() -> None:
    """Llama-style Strip after Fuse, and Metaspace, drop the space of the *first* token only;
    token bytes are the in-context bytes, so decode == bytes minus that one leading space."""
    sequence = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                  decoders.Strip(" ", 1, 0)])
    for decoder in (sequence, decoders.Metaspace()):
        tokenizer = _tiny_fast_tokenizer(decoder)
        vocab = Vocabulary.from_tokenizer(tokenizer)
        assert vocab.token_bytes[2] == b" b"
        for ids in ([2, 1, 2], [1, 2, 2], [2]):
            data = vocab.decode(ids).decode()
            assert _decode(tokenizer, ids) == (data[1:] if data.startswith(" ") else data)
    assert Vocabulary.from_tokenizer(_tiny_fast_tokenizer(sequence)).token_bytes[3] == b"A"
    assert Vocabulary.from_tokenizer(_tiny_fast_tokenizer(decoders.Metaspace())).token_bytes[3] == b"<0x41>"


class _SlowSentencePieceTokenizer:
    """What Vocabulary uses of a transformers Python tokenizer, over a real SentencePiece model."""

    def __init__(self, sp: spm.SentencePieceProcessor) -> None:
        self.sp_model = sp
        self.eos_token_id = sp.eos_id()
        self.all_special_ids: list[int] = []
        self.added_tokens_decoder: dict = {}

    def __len__(self) -> int:
        return self.sp_model.get_piece_size()

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.sp_model.id_to_piece(i) for i in ids]


def test_slow_sentencepiece_tokenizer() -> None:
    """Python tokenizers with a SentencePiece model: ▁ is a space, <0xNN> pieces are bytes, and
    control/unknown pieces have no content."""
    model = io.BytesIO()
    corpus = ["the quick brown fox jumps over the lazy dog", "hello world, héllo wörld"] * 50
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model, vocab_size=300,
                                   byte_fallback=True, model_type="bpe", minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    tokenizer = _SlowSentencePieceTokenizer(sp)
    vocab = Vocabulary.from_tokenizer(tokenizer)
    assert {sp.unk_id(), sp.bos_id(), sp.eos_id()} <= vocab.special_ids
    text = "hello 🙂 wörld 𓀀 fox"
    ids = sp.encode(text)
    assert vocab.decode(ids) == b" " + text.encode()  # in context: the dummy prefix is a space
    assert sp.decode(ids) == text


def test_tokenizer_without_known_decoding_raises() -> None:
    tokenizer = type("OddTokenizer", (), {"__len__": lambda self: 3, "eos_token_id": None})()
    with pytest.raises(ValueError, match="OddTokenizer"):
        Vocabulary.from_tokenizer(tokenizer)
