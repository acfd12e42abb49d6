"""``thinnest bench turn`` runs for real: the corpus's clean utterances, whisper tiny.en, and
the three turn detectors (LiveKit's audio model, the transcript's sentence ends, Pipecat's
Smart Turn v3.2); Smart Turn's features match Pipecat's own computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thinnest.bench.turn import find_points

from ._run import run_bench

pytestmark = pytest.mark.integration


def test_bench_turn_asks_every_detector_about_ends_and_pauses(tmp_path: Path) -> None:
    proc, results = run_bench(tmp_path, "turn", "--count", "6", timeout=300)
    assert proc.returncode == 0, proc.stderr
    for text in ("livekit", "transcript", "smart-turn", "finished sentences held", "pauses held"):
        assert text in proc.stdout, proc.stdout
    assert results["endpointing_ms"] == {"min": 300.0, "max": 2500.0}
    clean = len(results["corpus"])
    assert clean == 4  # of the first six utterances, every third is noisy
    for name in ("livekit", "transcript", "smart-turn"):
        r = results["detectors"][name]
        assert r["verdict_ms"] > 0
        assert r["ends"] == clean and 1 <= r["pauses"] <= clean
        assert 0 <= r["ends_held"] <= r["ends"] and 0 <= r["pauses_held"] <= r["pauses"]
        assert all(0.0 <= v["p"] <= 1.0 for v in r["verdicts"])
        share = r["ends_held"] / r["ends"]
        assert r["wait_after_end_ms"] == pytest.approx(300 + share * 2200)
    texts = {
        (v["index"], v["point"]): v["text"] for v in results["detectors"]["transcript"]["verdicts"]
    }
    corpus = {u["index"]: u["text"] for u in results["corpus"]}
    for (index, point), text in texts.items():
        if point == "pause":  # the cut-off text is a shorter piece of the sentence
            assert 0 < len(text.split()) < len(corpus[index].split()) + 2, text
    # whisper writes the finished sentences' end marks: most end the turn at once
    assert results["detectors"]["transcript"]["ends_held"] <= 1
    # Smart Turn hears a finished sentence as finished more often than not
    assert results["detectors"]["smart-turn"]["ends_held"] <= clean // 2


def test_smart_turn_features_match_pipecats_own(tmp_path: Path) -> None:
    """The model is only as good as its input: our numpy log-mel is Pipecat's, to float
    precision, on a voice-like signal shorter than the 8 s window (so padded)."""
    import subprocess

    from thinnest.bench.pipecat_peer import DEFAULT_VENV
    from thinnest.bench.smart_turn import SmartTurn, _mel_filters, log_mel

    rng = np.random.default_rng(7)
    t = np.arange(3 * 16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    ) + (0.02 * rng.standard_normal(t.size)).astype(np.float32)
    np.save(tmp_path / "audio.npy", audio)
    np.save(tmp_path / "ours.npy", log_mel(audio, _mel_filters()))
    script = (
        "import numpy as np, sys\n"
        "from pipecat.audio.turn.smart_turn._whisper_features import "
        "compute_whisper_log_mel_features as f\n"
        f"a = np.load({str(tmp_path / 'audio.npy')!r})\n"
        "a = np.pad(a, (128000 - a.size, 0))\n"
        f"d = np.abs(f(a, do_normalize=True) - np.load({str(tmp_path / 'ours.npy')!r})).max()\n"
        "print(d)\n"
    )
    proc = subprocess.run(
        [str(DEFAULT_VENV / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-4
    assert 0.0 <= SmartTurn().predict(audio) <= 1.0


def test_find_points_puts_the_pause_between_words_and_the_end_after_them() -> None:
    rate = 16000
    tone = (8000 * np.sin(np.arange(rate // 2) * 0.3)).astype(np.int16)  # 0.5 s "words"
    gap, lead = np.zeros(rate // 5, np.int16), np.zeros(rate, np.int16)
    pcm = np.concatenate([lead, tone, gap, tone, gap, tone, lead])
    end, pause = find_points(pcm)
    assert end == pytest.approx(lead.size + 3 * tone.size + 2 * gap.size, abs=160)
    assert pause is not None
    assert pause == pytest.approx(lead.size + 2 * tone.size + gap.size, abs=160)
    assert find_points(np.concatenate([lead, tone, lead]))[1] is None  # one word: no pause
