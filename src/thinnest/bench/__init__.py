"""The benchmarks behind ``thinnest bench``: measured numbers for the offline providers."""

from __future__ import annotations

from thinnest.bench.speech import GOALS, SpeechBenchOptions, run_speech_bench

__all__ = ["GOALS", "SpeechBenchOptions", "run_speech_bench"]
