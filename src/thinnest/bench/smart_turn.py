"""Pipecat's Smart Turn v3.2, an audio end-of-turn model, for ``thinnest bench turn``.

Smart Turn v3.2 (BSD-2-Clause, by Daily) is an 8.7 MB ONNX file inside the ``pipecat-ai``
wheel. It reads the last 8 s of a turn's 16 kHz audio (zeros before a shorter one) as 80
Whisper log-mel bands and answers the probability that the speaker has finished. The file is
taken from the Pipecat virtualenv the benchmarks already install from a hash-checked lock
(``requirements/pipecat.lock``, ``scripts/setup.sh --peers``), checked against
:data:`MODEL_SHA256` before it is loaded; Pipecat itself is never imported.

The features are computed here with numpy (the mel filters are faster-whisper's, the Slaney
bands Whisper uses): the waveform normalised to zero mean and unit variance, a 400-sample
periodic Hann STFT every 160 samples (reflect-padded, centred), power onto the mel bands,
``log10`` floored at the maximum minus 8, scaled as ``(x + 4) / 4``; 800 frames.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from thinnest.bench.pipecat_peer import DEFAULT_VENV
from thinnest.errors import ConfigError

__all__ = ["MODEL_SHA256", "SmartTurn", "log_mel", "model_path"]

SAMPLE_RATE = 16000
SECONDS = 8
_N_FFT = 400
_HOP = 160
_N_MELS = 80
_FRAMES = SECONDS * SAMPLE_RATE // _HOP  # 800

#: ``smart-turn-v3.2-cpu.onnx`` as shipped in pipecat-ai 1.14.0.
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
_IN_WHEEL = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


def model_path(venv: Path = DEFAULT_VENV) -> Path:
    """The ONNX file in the Pipecat virtualenv ``venv``.

    Raises:
        ConfigError: the virtualenv or the file is missing.
    """
    found = sorted(venv.glob(f"lib/python3*/site-packages/{_IN_WHEEL}"))
    if not found:
        raise ConfigError(
            f"Smart Turn v3.2 is read from the Pipecat virtualenv, and {venv} has none: "
            "run `scripts/setup.sh --peers` (it installs pipecat-ai from its hash-checked lock)",
            code="model_missing",
        )
    return found[0]


def _checked(path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MODEL_SHA256:
        raise ConfigError(
            f"{path} has SHA-256 {digest}, not the Smart Turn v3.2 file we checked "
            f"({MODEL_SHA256}): reinstall the Pipecat virtualenv (`scripts/setup.sh --peers`)",
            code="model_corrupt",
        )
    return data


def _mel_filters() -> np.ndarray:
    from faster_whisper.feature_extractor import FeatureExtractor

    filters: np.ndarray = FeatureExtractor.get_mel_filters(SAMPLE_RATE, _N_FFT, _N_MELS)
    return filters  # (80, 201)


_WINDOW = np.hanning(_N_FFT + 1)[:-1]  # periodic


def log_mel(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """The model's input for float32 16 kHz ``audio``: the last :data:`SECONDS` (zeros
    before shorter audio), as ``(80, 800)`` float32 log-mel features."""
    samples = SECONDS * SAMPLE_RATE
    audio = np.asarray(audio, dtype=np.float64)[-samples:]
    audio = np.pad(audio, (samples - audio.size, 0))
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    padded = np.pad(audio, _N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]  # (801, 400)
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=1)) ** 2
    mel = np.log10(np.maximum(filters @ power.T, 1e-10))[:, :_FRAMES]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


class SmartTurn:
    """The Smart Turn v3.2 model on one CPU thread."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        data = _checked(path or model_path())
        self._session: Any = ort.InferenceSession(data, sess_options=options)
        self._filters = _mel_filters()

    def predict(self, pcm: np.ndarray) -> float:
        """The probability that the speaker has finished, from int16 or float 16 kHz audio
        (the turn so far, its trailing silence included)."""
        audio = pcm.astype(np.float32) / 32768 if pcm.dtype == np.int16 else pcm
        features = log_mel(audio, self._filters)[np.newaxis]
        (out,) = self._session.run(None, {"input_features": features})[:1]
        return float(np.asarray(out).reshape(-1)[0])
