"""Lazy output-head logits (`decoding/scoring.py`): the same allowed logits as the model's own
forward pass, -inf elsewhere, and a refusal for models whose logits are not the head alone."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from structgen.decoding.scoring import SPARSE_FRACTION, LogitRows, OutputHead

VOCAB = 1000


def _tiny(seed: int = 0, **extra) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         **extra)
    return LlamaForCausalLM(config).eval()


@torch.inference_mode()
def _pass(model: LlamaForCausalLM, ids: list[int], n: int):
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0, -n:]
    hidden = model.get_decoder()(input_ids=x).last_hidden_state[0, -n:]
    return logits, hidden


def test_head_is_found_and_rows_match_the_model():
    model = _tiny()
    head = OutputHead.of(model)
    assert head is not None and OutputHead.of(model) is head  # cached per model
    logits, hidden = _pass(model, [5, 17, 3, 250, 999, 42], 4)
    rows = LogitRows(hidden, head)
    assert len(rows) == 4
    for i in (2, 0, 3, 1):  # any order: a later full row must not disturb earlier ones
        assert torch.allclose(rows[i], logits[i], atol=1e-5)


@pytest.mark.parametrize("allowed", [1, 7, int(SPARSE_FRACTION * VOCAB), VOCAB // 2, VOCAB])
def test_masked_rows_equal_masked_model_logits(allowed):
    model = _tiny(1)
    logits, hidden = _pass(model, [1, 2, 3, 4, 5], 3)
    gen = torch.Generator().manual_seed(allowed)
    for i in range(3):
        mask = torch.zeros(VOCAB, dtype=torch.bool)
        mask[torch.randperm(VOCAB, generator=gen)[:allowed]] = True
        got = LogitRows(hidden, OutputHead.of(model)).masked(i, mask)
        assert torch.isneginf(got[~mask]).all()
        assert torch.allclose(got[mask], logits[i][mask], atol=1e-5)
        assert int(got.argmax()) == int(logits[i].masked_fill(~mask, float("-inf")).argmax())


def test_models_with_more_than_a_head_are_refused():
    # Llama ignores final_logit_softcapping, so a head that applies it disagrees with the model
    assert OutputHead.of(_tiny(2, final_logit_softcapping=0.5)) is None


@pytest.mark.parametrize("name", ["smollm2", "gemma"])
@torch.inference_mode()
def test_screened_argmax_equals_the_masked_argmax(request, name):
    """The bf16 screen (where this CPU has one) rules out tokens only when their exact logit
    cannot be the masked maximum: on real hidden states, with masks of every size and masks
    keeping only near-ties of the top logits, `argmax` equals the argmax of the full masked row
    (ties by id), and the bound holds for every token."""
    lm = request.getfixturevalue(name)
    head = OutputHead.of(lm.model)
    ids = lm.tokenizer.encode('Invoice INV-0042 from ACME, total 1,234.50 EUR.\n{"invoice":"INV-0042",'
                              '"vendor":"ACME","total":1234.5,"currency":"EUR"}')
    hidden = lm.model.get_decoder()(input_ids=torch.tensor([ids])).last_hidden_state[0, -6:]
    screen = head.screen()
    if screen is not None:
        for rows in (hidden, hidden[-1:]):  # matrix and vector products
            approx, eps = screen.bounds(rows)
            assert bool(((approx - head.apply(rows).float()).abs() <= eps).all())
    width = head.weight.shape[0]
    gen = torch.Generator().manual_seed(0)
    for i in range(len(hidden)):
        full = head.apply(hidden[i]).float()
        near = full >= full.max() - 0.05  # the top logits and their near-ties
        masks = [torch.ones(width, dtype=torch.bool), near, ~near | (full == full.max())]
        for fraction in (0.01, 0.2, 0.7):
            masks.append(torch.rand(width, generator=gen) < fraction)
        for mask in masks:
            rows = LogitRows(hidden, head)
            assert rows.argmax(i, mask) == int(rows.masked(i, mask).argmax()), (i, int(mask.sum()))


def test_screen_is_refused_when_its_bound_would_not_hold(smollm2, monkeypatch):
    """A bf16 product less exact than the bound assumes (here: a bound 1,000 times too tight)
    disables the screen instead of risking a wrong greedy token."""
    from structgen.decoding import scoring

    head = OutputHead.of(smollm2.model)
    monkeypatch.setattr(scoring.Screen, "U", 2.0 ** -18)
    assert scoring.Screen.of(head) is None
