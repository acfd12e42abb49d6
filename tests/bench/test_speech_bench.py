"""``thinnest bench speech`` runs for real on two utterances and one provider of each kind.

The run synthesises its utterances with espeak, transcribes them with whisper tiny.en,
times espeak and the llama LLM, prints the table and writes the JSON; loading again reuses
the cached utterances without synthesising them again.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from thinnest.bench.corpus import add_noise, load_corpus, utterances
from thinnest.bench.metrics import normalise, percentile, rate_interval, word_error_rate
from thinnest.config import Settings
from thinnest.contracts.agent import DEFAULT_GREETING

pytestmark = pytest.mark.integration


def _bench(data_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["bench", "speech", "--quick", "--count", "2", "--stt", "tiny.en", "--tts", "espeak"]
    return subprocess.run(
        [sys.executable, "-m", "thinnest", *args, *extra, "--out", str(out)],
        env={**os.environ, "THINNEST_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bench_speech_prints_the_table_and_writes_sane_json(tmp_path: Path) -> None:
    proc = _bench(tmp_path, tmp_path / "out.json")
    assert proc.returncode == 0, proc.stderr
    for text in ("whisper tiny.en", "espeak", "llama", "WER", "first audio", "pass"):
        assert text in proc.stdout, proc.stdout
    results = json.loads((tmp_path / "out.json").read_text())
    assert {"stt", "tts", "llm", "checks", "corpus", "machine", "options"} <= results.keys()
    assert len(results["corpus"]) == 2
    [stt] = results["stt"]
    assert stt["context"] == DEFAULT_GREETING  # what each utterance could be answering
    assert 0.0 <= stt["wer"]["corpus"] <= 1.0
    low, high = stt["wer"]["corpus_ci95"]
    assert low <= stt["wer"]["corpus"] <= high
    assert stt["wer"]["corpus"] <= 0.3  # two clear-ish utterances: whisper gets most words
    assert stt["latency_ms"]["p50"] > 0 and stt["latency_ms"]["n"] >= 1
    assert [item["reference"] for item in stt["items"]] == [u.text for u in utterances(2)]
    [tts] = results["tts"]
    assert tts["provider"] == "espeak"
    assert 0 < tts["first_audio_ms"]["p50"] <= tts["first_audio_ms"]["p95"]
    assert 0 < tts["rtf"]["p50"] < 1  # espeak is much faster than real time
    [lm] = results["llm"]
    assert lm["ttft_ms"]["p50"] > 0 and lm["tokens_per_s"]["p50"] > 0
    checks = {(c["provider"], c["metric"]) for c in results["checks"]}
    assert checks == {
        ("whisper tiny.en", "wer"),
        ("whisper tiny.en", "latency_ms"),
        ("espeak", "first_audio_ms"),
        ("llama", "ttft_ms"),
    }
    cached = sorted((tmp_path / "bench" / "speech-corpus").glob("*.wav"))
    assert len(cached) == 2
    mtimes = [p.stat().st_mtime_ns for p in cached]

    settings = Settings(data_dir=tmp_path)
    again = asyncio.run(load_corpus(utterances(2), tmp_path / "bench" / "speech-corpus", settings))
    assert [p.stat().st_mtime_ns for p in cached] == mtimes  # the utterances were reused
    assert [u for u, _ in again] == utterances(2) and all(pcm.size > 16000 for _, pcm in again)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--llm", "fixed"], "unknown option 'temperature' of llm provider 'fixed'"),
        (["--stt", "tiny.en:wide"], "invalid option 'window' of stt provider 'whisper'"),
        (["--tts", "nope"], "unknown tts provider 'nope'"),
    ],
    ids=["llm-without-temperature", "bad-window", "unknown-tts"],
)
def test_bench_speech_refuses_a_bad_provider_before_running(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    proc = _bench(tmp_path, tmp_path / "out.json", *extra)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "synthesising" not in proc.stderr  # refused before any utterance or model
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("Set a reminder at 6 o'clock.", "set a reminder at six o clock", 0.0),
        ("book a table", "book the table", 1 / 3),
        ("book a table", "book a table now please", 2 / 3),
        ("book a table", "", 1.0),
    ],
    ids=["normalised-equal", "substitution", "insertions", "all-deleted"],
)
def test_word_error_rate(reference: str, hypothesis: str, expected: float) -> None:
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


def test_corpus_is_fixed_varied_and_noise_is_reproducible() -> None:
    items = utterances(32)
    assert items == utterances(32) and len({u.key for u in items}) == 32
    assert {u.tts for u in items} == {"espeak", "piper"}
    assert sum(u.snr_db is not None for u in items) >= 10
    assert normalise("Hi-fi, 12!") == ["hi", "fi", "twelve"]
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and math.isnan(percentile([], 50))
    import numpy as np

    tone = (8000 * np.sin(np.linspace(0, 200, 16000))).astype(np.int16)
    noisy = add_noise(tone, 10.0, seed=3)
    assert np.array_equal(noisy, add_noise(tone, 10.0, seed=3))
    snr = 10 * np.log10(np.mean(tone.astype(float) ** 2) / np.var(noisy.astype(float) - tone))
    assert 9.0 < snr < 11.0


def test_rate_interval_shows_how_much_the_corpus_decides() -> None:
    # 20 utterances of 10 words: half heard perfectly, half with 2 errors -> 10 %
    errors, words = [0, 2] * 10, [10] * 20
    low, high = rate_interval(errors, words)
    assert low < 0.10 < high and (low, high) == rate_interval(errors, words)
    assert 0.04 < low and high < 0.16  # resampling 20 utterances moves the rate by points
    wide = rate_interval(errors[:4], words[:4])
    assert wide[0] < low and wide[1] > high  # fewer utterances, less known
    assert rate_interval([1] * 8, [10] * 8) == pytest.approx((0.1, 0.1))  # no spread, no doubt
    assert all(math.isnan(x) for x in rate_interval([], []))
