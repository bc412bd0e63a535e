"""Using `Matcher` in your own decode loop (here a plain greedy loop over a transformers model).

Run: .venv/bin/python examples/matcher_loop.py
"""
from __future__ import annotations

import re

import torch

import structgen

PATTERN = r"[A-Z][a-z]+, [A-Z]{2} \d{5}"  # a US city, state and ZIP code


def main() -> None:
    lm = structgen.load_model()
    matcher = structgen.Matcher(structgen.Regex(PATTERN), lm.tokenizer,
                                vocab_size=lm.vocab.width)
    prompt = "The headquarters address ends with the city, state and ZIP: "
    ids = torch.tensor([lm.tokenizer.encode(prompt)])
    past = None
    out: list[int] = []
    with torch.inference_mode():
        while not matcher.is_terminated() and len(out) < 30:
            res = lm.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            logits = res.logits[0, -1].masked_fill(~matcher.mask(), float("-inf"))
            token = int(torch.argmax(logits))
            assert matcher.consume(token)
            if token in lm.vocab.eos_ids:
                break
            out.append(token)
            ids = torch.tensor([[token]])
    text = lm.tokenizer.decode(out)
    print(repr(text), "matches:", re.fullmatch(PATTERN, text) is not None)


if __name__ == "__main__":
    main()
