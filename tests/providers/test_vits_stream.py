"""Piper's voice model cut in three and decoded window by window (providers/_vits.py).

The streamed audio must be the one-pass audio of the untouched model: with the noise scales
at zero VITS is deterministic, so the two are compared sample by sample.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

from thinnest.errors import ConfigError
from thinnest.providers import models
from thinnest.providers._vits import CONTEXT, StreamingVits, split_model, windows

_TEXT = "Can you tell me the opening hours of the pharmacy on Main Street?"


@pytest.fixture(scope="module")
def voice(models_settings):
    piper = pytest.importorskip("piper")
    directory = models.prepare("piper-en_US-joe-medium", settings=models_settings)
    path = directory / "en_US-joe-medium.onnx"
    config = piper.PiperConfig.from_dict(
        json.loads((directory / "en_US-joe-medium.onnx.json").read_text())
    )
    data = path.read_bytes()
    whole = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    phonemizer = piper.PiperVoice(config=config, session=whole)
    ids = np.array([phonemizer.phonemes_to_ids(phonemizer.phonemize(_TEXT)[0])], np.int64)
    feeds = {
        "input": ids,
        "input_lengths": np.array([ids.shape[1]], np.int64),
        "scales": np.array([0.0, 1.0, 0.0], np.float32),  # no noise: deterministic
    }
    return data, whole, feeds


def test_windows_cover_every_frame_once_with_context() -> None:
    for frames in (1, 19, 20, 21, 80, 81, 279, 2000):
        cuts = windows(frames)
        kept = [i for w in cuts for i in range(w.start, w.end)]
        assert kept == list(range(frames))
        assert cuts[0].end == min(frames, 20)
        sizes = [w.end - w.start for w in cuts]
        schedule = [20, 40, 80, 160] + [240] * len(sizes)  # doubling, then the largest
        assert sizes[:-1] == schedule[: len(sizes) - 1]
        assert 0 < sizes[-1] <= schedule[len(sizes) - 1]
        for w in cuts:
            assert w.lo == max(0, w.start - CONTEXT) and w.hi == min(frames, w.end + CONTEXT)


def test_streamed_audio_is_the_one_pass_audio(voice) -> None:
    data, whole, feeds = voice
    reference = whole.run(None, feeds)[0].reshape(-1)
    model = StreamingVits(data, session_options=onnxruntime.SessionOptions())
    assert model.parts.flow is not None  # piper's export is cut in three
    pieces = list(model.stream(feeds))
    assert len(pieces) >= 4
    assert pieces[0].size == 20 * 256  # a short first window, out before the rest
    streamed = np.concatenate(pieces)
    assert abs(streamed.size - reference.size) <= 256  # the model pads the last frame
    size = min(streamed.size, reference.size)
    assert np.abs(reference).max() > 0.1
    assert np.abs(streamed[:size] - reference[:size]).max() < 1e-3


def test_a_short_sentence_is_one_window(voice) -> None:
    data, whole, feeds = voice
    short = {**feeds, "input": feeds["input"][:, :12], "input_lengths": np.array([12])}
    model = StreamingVits(data, session_options=onnxruntime.SessionOptions())
    pieces = list(model.stream(short, first=10_000))
    reference = whole.run(None, short)[0].reshape(-1)
    assert len(pieces) == 1
    assert np.abs(pieces[0] - reference[: pieces[0].size]).max() < 1e-3


def test_a_model_without_a_decoder_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"], name="/other/Identity")],
        "not-vits",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ConfigError, match="no decoder"):
        split_model(helper.make_model(graph).SerializeToString())
