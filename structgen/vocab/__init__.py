"""Token vocabularies as bytes: what each token id contributes to the generated text."""
from structgen.vocab.token_bytes import Vocabulary

__all__ = ["Vocabulary"]
