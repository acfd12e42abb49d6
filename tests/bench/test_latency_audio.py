"""The latency bench times answers from the end of the speech, not the end of the file."""

from __future__ import annotations

import numpy as np

from thinnest.bench.latency import trim_tail


def test_trailing_near_silence_is_cut_and_speech_kept() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    speech = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)  # 1 s
    hiss = np.random.default_rng(1).normal(0, 20, rate // 4).astype(np.int16)  # 250 ms
    trimmed = trim_tail(np.concatenate([speech, hiss]), rate)
    assert len(trimmed) == len(speech)
    assert len(trim_tail(speech, rate)) == len(speech)
    assert len(trim_tail(hiss, rate)) == len(hiss)  # nothing loud: left as it is
