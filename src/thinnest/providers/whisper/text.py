"""What a decode's text is judged by: noise taken for words, a sentence said again."""

from __future__ import annotations

import dataclasses

__all__ = [
    "DOUBT",
    "NO_SPEECH",
    "Heard",
    "bare",
    "not_speech",
    "within",
    "without_repeats",
    "words_of",
]

NO_SPEECH = 0.6  # a decode whose audio alone is judged no speech above this ...
DOUBT = 0.4  # ... by this much more than its text's confidence is noise: see not_speech


@dataclasses.dataclass(frozen=True)
class Heard:
    """One decode: its text, the mean probability of its tokens, and the probability Whisper
    gives the audio alone (without any context) of holding no speech at all."""

    text: str
    confidence: float
    no_speech: float


def not_speech(heard: Heard) -> bool:
    """Whether a decode is no user turn: no words, or a guess at words in what is likely noise.

    Whisper writes words into a hum, a tone, breathing or line noise ("I don't know.",
    "Okay."); it also says that such audio probably holds no speech, and is unsure of the
    words. Measured with tiny.en, decoding without context (greedy and five beams; a context
    raises the confidence of guesses, so :meth:`WhisperSTT.transcribe` judges doubtful
    decodes again without it): a 100 Hz hum, 50 Hz mains with harmonics, a 1 kHz tone, white
    noise and breathing (2 s each) 0.72-0.95 no-speech and no-speech minus confidence
    0.54-0.79; 45 short answers (15 words in three espeak-ng voices) and the speech bench's
    112 utterances (a third with noise at 10 dB SNR) at most 0.74 no-speech but at most 0.33
    no-speech minus confidence: a confident word in a noisy line is kept. Line clicks (0.59
    no-speech) pass this test: the VAD in front of Whisper (the stream's own, or the
    session's) is what refuses them.
    """
    if not words_of(heard.text):
        return True
    return heard.no_speech > NO_SPEECH and heard.no_speech - heard.confidence > DOUBT


def bare(word: str) -> str:
    """A word as compared: lower case, no punctuation around it ("" for "...")."""
    return word.strip(".,!?;:\"'").lower()


def words_of(text: str) -> list[str]:
    """The words of ``text`` as compared (:func:`bare`), punctuation-only ones left out."""
    return [k for k in map(bare, text.split()) if k]


def within(words: list[str], other: list[str]) -> bool:
    """Whether ``words`` occur together, in order, in ``other``."""
    n = len(words)
    return any(other[i : i + n] == words for i in range(len(other) - n + 1))


def _begins(word: str, start: str) -> bool:
    """Whether ``start`` is ``word`` or its beginning, cut off mid-way (``o`` of ``o'clock``)."""
    return word == start or bool(start) and word.startswith(start)


def without_repeats(text: str) -> str:
    """``text`` cut to one period where its words repeat it (``A B C. A B C. A B``: ``A B C.``).

    In a short window Whisper sometimes says the sentence again (and again) after the
    speech ends, often cut off mid-way; a whole sentence said twice in one breath is far
    rarer than that. Words are compared without case or punctuation (``6 o'clock.`` then
    ``6 o'clock``), so the first word (no leading space in Whisper's tokens) matches too.
    A one-word answer is the worst case: tiny.en wrote 19 of 20 (10 words, 2 voices) two or
    three times in the fitted window ("Paris Paris", "No. No. No."), none in the 30 s one;
    text that is one word over and over is that word once. The repeat's last word may be cut
    off itself ("... seven o'clock tomorrow evening. Your table ... seven o", whisper base on
    Piper's voice): it matches a word it begins.
    """
    words = text.split()
    key = [bare(w) for w in words]  # one per word, even "..."
    n = len(words)
    if n > 1 and key[0] and key.count(key[0]) == n:
        return words[0].rstrip(",;:")
    for period in range(2, n):
        # Said again whole (two words or more), or in part (three or more) after its end.
        whole = n - period >= period
        if not whole and (n - period < 3 or words[period - 1][-1] not in ".!?"):
            continue
        if all(key[i] == key[i - period] for i in range(period, n - 1)) and _begins(
            key[n - 1 - period], key[n - 1]
        ):
            return " ".join(words[:period])
    return text
