"""Speculative decoding on the real SmolLM2: greedy output is token-identical to plain masked
decoding for every drafter combination, constraint states follow the emitted tokens, budgets
stay exact, and drafters that keep failing are benched."""
from __future__ import annotations

import re

import pytest

import structgen
from structgen import Grammar, Regex, generate
from structgen.decoding.drafters import DraftContext, Drafter, Proposal

pytestmark = [pytest.mark.model, pytest.mark.usefixtures("one_thread")]

DOC = ("Invoice INV-2024-0042 from ACME Tools GmbH to Bright Ideas Ltd, dated 2024-03-15, "
       "total 1234.50 EUR.")
INVOICE = Regex(r'\{"number": "[A-Z0-9-]{3,20}", "seller": "[^"\\]{1,40}", '
                r'"buyer": "[^"\\]{1,40}", "date": "\d{4}-\d{2}-\d{2}", "total": \d{1,6}\.\d{2}\}')
PROMPTS = {
    "invoice": [{"role": "user", "content": f"Extract the invoice as JSON.\n\n{DOC}"}],
    "person": [{"role": "user", "content": "Alice Martin, 34, lives in Lyon and works as a nurse. "
                                          "Give her name, age and city as JSON."}],
}
DRAFTER_SETS = [("forced",), ("lookup",), ("model",), ("forced", "lookup", "model")]



@pytest.fixture(scope="module")
def json_grammar() -> Grammar:
    with open("grammars/json.lark") as f:
        return Grammar(f.read())


def _constraints(json_grammar: Grammar) -> dict[str, structgen.Constraint]:
    schema = structgen.JsonSchema({
        "type": "object", "additionalProperties": False, "required": ["name", "age", "city"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                       "city": {"type": "string"}}})
    return {"regex": INVOICE, "grammar": json_grammar, "schema": schema}


class StateProbe(Drafter):
    """Proposes nothing; records the loop's constraint state at every pass so the test can
    compare it with the state reached by feeding the emitted tokens."""

    name = "probe"

    def __init__(self, prompt_len: int) -> None:
        self.prompt_len = prompt_len
        self.seen: list[tuple[list[int], object]] = []

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        self.seen.append((ctx.history[self.prompt_len:], ctx.state))
        return Proposal()


@pytest.mark.parametrize("kind,prompt", [("regex", "invoice"), ("grammar", "invoice"),
                                         ("grammar", "person"), ("schema", "person")])
def test_greedy_is_token_identical_for_every_drafter_set(smollm2, json_grammar, kind, prompt):
    constraint = _constraints(json_grammar)[kind]
    messages = PROMPTS[prompt]
    plain = generate(smollm2, messages, constraint, max_tokens=32, speculative=False)
    assert not plain.stats.drafted
    for names in DRAFTER_SETS:
        spec = generate(smollm2, messages, constraint, max_tokens=32, drafters=names,
                        draft_model=smollm2 if "model" in names else None)
        assert spec.tokens == plain.tokens, (kind, prompt, names, spec.text, plain.text)
        assert (spec.finish_reason, spec.text, spec.value) == (plain.finish_reason, plain.text, plain.value)
        assert set(spec.stats.drafted) <= set(names)
        for name, accepted in spec.stats.accepted.items():
            assert 0 <= accepted <= spec.stats.drafted[name]
        if names == ("model",):  # the draft model is the target itself: its drafts pass
            assert spec.stats.forward_passes < plain.stats.forward_passes


def test_unconstrained_greedy_is_token_identical(smollm2):
    prompt = "Text: the cat sat on the mat and looked at the old dog.\nSame text again: the cat sat"
    plain = generate(smollm2, prompt, max_tokens=24, speculative=False)
    spec = generate(smollm2, prompt, max_tokens=24, drafters=("lookup",))
    assert spec.tokens == plain.tokens and spec.finish_reason == plain.finish_reason
    assert spec.stats.accepted.get("lookup", 0) > 0  # the repeated sentence is copied


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (0.8, 0)])
def test_state_after_every_pass_is_the_state_of_the_emitted_tokens(smollm2, json_grammar,
                                                                  temperature, seed):
    from structgen.decoding.loop import encode_prompt

    messages = PROMPTS["invoice"]
    probe = StateProbe(len(encode_prompt(smollm2.tokenizer, messages)))
    result = generate(smollm2, messages, INVOICE, max_tokens=60, temperature=temperature, seed=seed,
                      drafters=[probe, "forced", "lookup"])
    automaton = INVOICE.compile(smollm2.vocab)
    assert len(probe.seen) >= 3
    for emitted, state in probe.seen:
        fed = automaton.start
        for token in emitted:
            fed = automaton.advance(fed, token)
        assert fed == state
    assert emitted == result.tokens[: len(emitted)]
    assert result.finished and re.fullmatch(INVOICE.pattern, result.text)


def test_sampling_outputs_are_valid_and_drafts_verified(smollm2):
    pattern = r'\{"number": "[A-Z0-9-]{3,20}", "total": \d{1,6}\.\d{2}\}'
    for seed in range(2):
        result = generate(smollm2, PROMPTS["invoice"], Regex(pattern), max_tokens=40,
                          temperature=1.0, seed=seed, draft_model=smollm2)
        assert result.finished and re.fullmatch(pattern, result.text), result.text
        assert sum(result.stats.drafted.values()) > 0
        assert result.stats.forced_tokens == result.stats.accepted.get("forced", 0)


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 0)])
def test_budget_stays_exact_under_speculation(smollm2, temperature, seed):
    pattern = r"[A-Z][a-z]{2,12}( [A-Z][a-z]{2,12}){0,3}, [A-Z]{2} \d{5}"
    prompt = "Ship to: Springfield, IL 62704. Ship to: "
    automaton = Regex(pattern).compile(smollm2.vocab)
    need = automaton.tokens_to_complete(automaton.start)
    for budget in (need, need + 2):
        spec = generate(smollm2, prompt, Regex(pattern), max_tokens=budget, temperature=temperature,
                        seed=seed, drafters=("forced", "lookup"))
        assert spec.finished and len(spec.tokens) <= budget and re.fullmatch(pattern, spec.text)
        if temperature == 0:
            plain = generate(smollm2, prompt, Regex(pattern), max_tokens=budget, speculative=False)
            assert spec.tokens == plain.tokens


class WrongDrafter(Drafter):
    """Always proposes an allowed token the model never picks: every draft fails."""

    name = "wrong"

    def propose(self, ctx: DraftContext, k: int) -> Proposal:
        ids = ctx.automaton.allowed_ids(ctx.state)
        return Proposal([int(ids.max())] if len(ids) else [])


def test_failing_drafter_is_benched(smollm2):
    """After its first drafts (up to `max_k` tokens at the prior acceptance, whatever the pass
    costs measured so far) a drafter that keeps failing only probes: one token every
    `probe_every` passes."""
    from structgen.decoding.speculative import DraftLength

    result = generate(smollm2, "Digits: ", Regex(r"[0-9 ]{120}"), max_tokens=120,
                      drafters=[WrongDrafter()])
    drafted = result.stats.drafted.get("wrong", 0)
    assert result.stats.accepted.get("wrong", 0) <= drafted
    policy = DraftLength()
    probes = result.stats.forward_passes // policy.probe_every + 1
    assert drafted <= policy.max_k + probes  # one first burst, then probes only (20 of 120)


def test_drafter_arguments_are_checked(smollm2):
    with pytest.raises(ValueError, match="unknown drafter"):
        generate(smollm2, "x", max_tokens=2, drafters=("psychic",))
    with pytest.raises(ValueError, match="needs draft_model"):
        generate(smollm2, "x", max_tokens=2, drafters=("model",))
    with pytest.raises(ValueError, match="contradicts"):
        generate(smollm2, "x", max_tokens=2, speculative=False, draft_model=smollm2)
    # a bare transformers causal LM works as draft model too
    direct = generate(smollm2, "Count: 1, 2, 3,", max_tokens=6, draft_model=smollm2.model,
                      drafters=("model",))
    assert direct.tokens == generate(smollm2, "Count: 1, 2, 3,", max_tokens=6, speculative=False).tokens
    assert direct.stats.accepted["model"] > 0
    stats = generate(smollm2, "x", max_tokens=2).stats.as_dict()
    assert {"drafted", "accepted", "forced_tokens", "forward_passes", "tokens_per_s"} <= set(stats)


def test_padded_passes_keep_greedy_output(smollm2, json_grammar, monkeypatch):
    """Every verify pass padded with 3 filler positions (as `PassCost` pads to cheaper widths):
    the output stays token-identical to plain decoding for each kind of constraint."""
    from structgen.decoding.speculative import PassCost

    monkeypatch.setattr(PassCost, "width", lambda self, n: n + 3)
    for name, constraint in _constraints(json_grammar).items():
        messages = PROMPTS["invoice" if name == "regex" else "person"]
        plain = generate(smollm2, messages, constraint, max_tokens=40, speculative=False)
        spec = generate(smollm2, messages, constraint, max_tokens=40)
        assert spec.tokens == plain.tokens, name
        assert spec.stats.forward_passes < plain.stats.forward_passes, name
