"""The in-place KV cache and copy-free grouped-query attention change no logit."""
from __future__ import annotations

import os

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from structgen import Regex, generate
from structgen.decoding.kvcache import GrowingLayer, grouped_query_attention, new_cache
from structgen.decoding.loop import _Forward

pytestmark = pytest.mark.usefixtures("one_thread")


class _Reference(_Forward):
    """The loop's forward with transformers' own cache and attention path."""

    def _fresh(self):
        cache = DynamicCache(config=self.model.config)
        cache.activate_past_recording()  # sliding layers: rollback past the window
        return cache

    def __call__(self, ids, n=1):
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([list(ids)]), past_key_values=self.cache,
                             use_cache=True, logits_to_keep=n)
        self.cache = out.past_key_values
        self.length += len(ids)
        return out.logits[0, -n:].float()


def _logits(rows, n: int) -> torch.Tensor:
    if isinstance(rows, torch.Tensor):
        return rows
    everything = torch.ones(rows.head.weight.shape[0], dtype=torch.bool)
    return torch.stack([rows.masked(i, everything) for i in range(n)])


@pytest.mark.parametrize("name,prompt", [("smollm2", 200), ("gemma", 530)])
def test_speculative_passes_match_transformers_cache(request, name, prompt):
    """A prompt, then verify passes of several lengths with rollbacks in between, crossing the
    buffer's first capacity (256) and, on Gemma 3, the 512-token sliding window: the logits
    equal those over transformers' DynamicCache with its default attention path: bit for bit on
    SmolLM2; on Gemma 3 past the window torch picks another kernel for the masked grouped heads
    of the sliding layers, and logits (magnitude ~10) move by ~2e-5."""
    lm = request.getfixturevalue(name)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(100, len(lm.tokenizer), (prompt + 120,), generator=gen).tolist()
    ours, ref = _Forward(lm.model), _Reference(lm.model)
    assert any(isinstance(layer, GrowingLayer) for layer in ours.cache.layers)
    done = 0
    # (tokens fed, tokens rolled back afterwards)
    for fed, rejected in [(prompt, 0), (1, 0), (6, 4), (5, 0), (9, 7), (1, 0), (12, 3), (40, 30),
                          (8, 0)]:
        feed = tokens[done:done + fed]
        a, b = _logits(ours(feed, min(fed, 6)), min(fed, 6)), ref(feed, min(fed, 6))
        if name == "smollm2":
            assert torch.equal(a, b), (done, fed)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5), (name, done, fed)
        assert torch.equal(a.argmax(-1), b.argmax(-1))
        done += fed - rejected
        ours.crop(done)
        ref.crop(done)
        assert ours.cache.get_seq_length() == ref.cache.get_seq_length() == done


def test_growing_layer_keeps_its_contents_when_it_grows_and_crops():
    layer = GrowingLayer()
    gen = torch.Generator().manual_seed(0)
    reference = torch.empty((1, 2, 0, 4))
    for n, drop in [(100, 0), (200, 50), (3, 1), (300, 299), (1, 0)]:
        k = torch.randn((1, 2, n, 4), generator=gen)
        keys, values = layer.update(k, -k)
        reference = torch.cat([reference, k], dim=2)
        assert torch.equal(keys, reference) and torch.equal(values, -reference)
        layer.crop(-drop)
        reference = reference[:, :, :reference.shape[2] - drop]
        assert layer.get_seq_length() == reference.shape[2]
        assert torch.equal(layer.keys, reference)


def test_new_cache_keeps_sliding_layers(gemma, smollm2):
    kinds = {type(layer) for layer in new_cache(gemma.model).layers}
    assert GrowingLayer in kinds and len(kinds) == 2  # Gemma 3: full and sliding layers
    assert all(type(layer) is GrowingLayer for layer in new_cache(smollm2.model).layers)
    assert not any(type(layer) is DynamicLayer for layer in new_cache(gemma.model).layers)


def test_grouped_query_attention_restores_the_environment(smollm2, monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    with grouped_query_attention(smollm2.model):
        assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "1"
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ
    monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", "0")
    with pytest.raises(RuntimeError), grouped_query_attention(smollm2.model):
        raise RuntimeError
    assert os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] == "0"


def test_speculative_rollback_past_the_sliding_window(gemma):
    """Gemma 3 with a prompt longer than its 512-token window: rejected drafts roll back the
    sliding layers (transformers refuses that unless they record past states), and the greedy
    output equals plain decoding."""
    prompt = "Repeat the list: " + ", ".join(f"item {i}" for i in range(200))
    constraint = Regex("[a-z0-9 ,]{1,60}")
    spec = generate(gemma, prompt, constraint, max_tokens=24, speculative=True)
    plain = generate(gemma, prompt, constraint, max_tokens=24, speculative=False)
    assert spec.stats.prompt_tokens > 512
    assert sum(spec.stats.drafted.values()) > sum(spec.stats.accepted.values())  # rollbacks
    assert spec.tokens == plain.tokens


@pytest.mark.parametrize("name,prompt", [("smollm2", 40), ("gemma", 520)])
def test_padded_passes_give_the_logits_of_the_unpadded_ones(request, name, prompt):
    """Passes padded to a cheaper width (`PassCost`): filler positions after the draft change
    no logit of the draft's positions beyond rounding, and the crop removes them, also in
    Gemma's sliding layers past the window."""
    lm = request.getfixturevalue(name)
    gen = torch.Generator().manual_seed(2)
    tokens = torch.randint(100, len(lm.tokenizer), (prompt + 60,), generator=gen).tolist()
    padded, ref = _Forward(lm.model), _Reference(lm.model)
    padded(tokens[:prompt]), ref(tokens[:prompt])
    done = prompt
    for fed, pad, rejected in [(3, 1, 1), (2, 2, 0), (5, 3, 4), (1, 3, 0), (7, 1, 2)]:
        feed = tokens[done:done + fed]
        a, b = _logits(padded(feed, fed, pad), fed), ref(feed, fed)
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5), (name, done, fed, pad)
        assert torch.equal(a.argmax(-1), b.argmax(-1))
        done += fed - rejected
        padded.crop(done)
        ref.crop(done)
        assert padded.length == done and padded.cache.get_seq_length() == done
