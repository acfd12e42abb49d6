"""Small, dependency-free measures of the speech benchmark: WER and percentiles.

The word error rate is the word-level edit distance (substitutions, insertions and
deletions) between a normalised reference and a normalised hypothesis, divided by the
reference's length. Normalising lower-cases, spells out digits and drops punctuation, so
"7 o'clock." and "seven o'clock" count as the same words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = [
    "edit_distance",
    "normalise",
    "percentile",
    "rate_interval",
    "summary",
    "word_error_rate",
]

_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TENS = {10: "ten", 11: "eleven", 12: "twelve", 15: "fifteen", 20: "twenty", 30: "thirty"}


def _spell(number: str) -> str:
    value = int(number)
    if value in _TENS:
        return _TENS[value]
    if value < 10:
        return _DIGITS[value]
    return " ".join(_DIGITS[int(d)] for d in number)


def normalise(text: str) -> list[str]:
    """Lower-case words of ``text`` with digits spelt out and punctuation dropped.

    Args:
        text: a reference sentence or a transcript.

    Returns:
        Its words, e.g. ``["seven", "o", "clock"]`` for ``"7 o'clock."``.
    """
    text = re.sub(r"\d+", lambda m: f" {_spell(m.group())} ", text.lower())
    text = text.replace("'", " ").replace("-", " ")
    return "".join(c if c.isalnum() or c.isspace() else " " for c in text).split()


def edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (one row of the table at a time)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, 1):
        diagonal, row[0] = row[0], i
        for j, hyp_word in enumerate(hypothesis, 1):
            diagonal, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diagonal + (ref_word != hyp_word)),
            )
    return row[len(hypothesis)]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (0 is perfect; may exceed 1)."""
    ref = normalise(reference)
    return edit_distance(ref, normalise(hypothesis)) / max(1, len(ref))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict[str, float]:
    """``{"p50", "p95", "min", "max", "n"}`` of ``values`` (NaN for an empty list)."""
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
        "n": len(values),
    }


def rate_interval(
    errors: Sequence[int], words: Sequence[int], *, rounds: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of a corpus error rate, by resampling its utterances (bootstrap).

    The same speech heard again by the same model gives the same errors; what the interval
    shows is how much the rate rests on which utterances the corpus happens to hold: a goal
    inside it is not shown met or missed by this corpus. Fixed ``seed``: the same results
    give the same interval.

    Args:
        errors: word errors of each utterance.
        words: reference words of each utterance.
        rounds: resamples.
        seed: of the resampling.

    Returns:
        ``(low, high)``; ``(nan, nan)`` for no utterances.
    """
    import numpy as np

    if not errors:
        return math.nan, math.nan
    err, n = np.asarray(errors, dtype=float), np.asarray(words, dtype=float)
    picks = np.random.default_rng(seed).integers(0, err.size, size=(rounds, err.size))
    rates = err[picks].sum(axis=1) / np.maximum(1.0, n[picks].sum(axis=1))
    low, high = np.percentile(rates, [2.5, 97.5])
    return float(low), float(high)
