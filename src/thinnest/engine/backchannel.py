"""Backchannels: the caller's "mm-hmm", "okay", "right" while the agent speaks are not turns.

A caller who says "mm-hmm" while the agent talks means "go on". Voice activity pauses the
agent's audio after ``interruption.min_duration`` of speech (barge-in must be fast, and the
words come only after the STT), and livekit-agents resumes the paused reply when the pause
yields no transcript (``resume_false_interruption``). Whisper, though, writes a backchannel
down ("Mm-hmm.", "Okay."), so the transcript ended the paused reply and became a user turn
the agent answered ("Okay!"): the caller who said "go on" lost the rest of the answer.

:func:`is_backchannel` tells whether a transcript is nothing but backchannel words;
:func:`without_backchannels` drops such final transcripts from the STT's events while the
agent holds the floor (a reply playing or paused). The pause then ends as a noise's does:
the reply resumes. When the agent is silent the same words pass: "okay" can answer a
question.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Callable

from livekit.agents import stt

from thinnest.log import logger

__all__ = ["BACKCHANNEL_PHRASES", "is_backchannel", "without_backchannels"]

log = logger.getChild("engine")

#: Sounds that only say "I'm listening" (lower case, words split on anything that is not a
#: letter, a digit or an apostrophe, so "mm-hmm" is "mm hmm"), even over a question.
HUMS: frozenset[tuple[str, ...]] = frozenset(
    tuple(phrase.split()) for phrase in ("mm", "uh huh", "uh hum", "ah", "aha", "oh", "uh", "um")
)  # "mm" is every hum: mm, mmm, hmm, mhm, m (see _HUM)

#: Words that say "go on" over a statement, but answer a question ("Yes." to "Shall I?").
ACKNOWLEDGEMENTS: frozenset[tuple[str, ...]] = frozenset(
    tuple(phrase.split())
    for phrase in (
        "okay",
        "ok",
        "right",
        "all right",
        "alright",
        "yeah",
        "yep",
        "yup",
        "yes",
        "sure",
        "i see",
        "got it",
        "cool",
        "nice",
        "great",
        "good",
        "exactly",
    )
)

#: Words that ask the speaker to go on. Whisper also writes a hum over speech this way
#: ("And then...", "And." for "mm-hmm" in the conversation bench), which the agent answered.
CONTINUERS: frozenset[tuple[str, ...]] = frozenset(
    tuple(phrase.split()) for phrase in ("and", "and then", "go on", "keep going", "please")
)

#: Phrases that, alone or repeated, make a backchannel.
BACKCHANNEL_PHRASES = HUMS | ACKNOWLEDGEMENTS | CONTINUERS

#: Longest backchannel judged, in words (a run of hums counts as one): anything longer is
#: something said.
MAX_WORDS = 4

_TRANSCRIPTS = (
    stt.SpeechEventType.FINAL_TRANSCRIPT,
    stt.SpeechEventType.INTERIM_TRANSCRIPT,
    stt.SpeechEventType.PREFLIGHT_TRANSCRIPT,
)

_WORD = re.compile(r"[a-z0-9']+")  # a number is a word: "Yes, 2." is an answer


#: A hum however Whisper spells it: "Mm", "Mmm", "Hmm", "Mhm", "M-M-M-M" (each "m" a word).
_HUM = re.compile(r"^[mh]*m[mh]*$")


def _words(text: str) -> list[str]:
    """The words of ``text``, each hum spelt "mm" and a run of hums one word ("And m m m m"
    is "and mm")."""
    words: list[str] = []
    for word in _WORD.findall(text.lower().replace("’", "'")):
        if _HUM.match(word):
            if words and words[-1] == "mm":
                continue
            word = "mm"
        words.append(word)
    return words


def is_backchannel(text: str, *, hums_only: bool = False) -> bool:
    """Whether ``text`` is made only of backchannel phrases ("Mm-hmm.", "Okay, okay.",
    "Oh, I see."), at most :data:`MAX_WORDS` words; with ``hums_only``, only of
    :data:`HUMS`. An empty text is not one."""
    words = _words(text)
    if not words or len(words) > MAX_WORDS:
        return False
    phrases = HUMS if hums_only else BACKCHANNEL_PHRASES
    longest = max(len(p) for p in phrases)
    # can[i]: words[i:] splits into backchannel phrases
    can = [False] * len(words) + [True]
    for i in range(len(words) - 1, -1, -1):
        can[i] = any(
            tuple(words[i : i + n]) in phrases and can[i + n]
            for n in range(1, min(longest, len(words) - i) + 1)
        )
    return can[0]


async def without_backchannels(
    events: AsyncIterable[stt.SpeechEvent | str],
    agent_has_floor: Callable[[], bool],
    on_dropped: Callable[[str], None] = lambda _text: None,
    agent_asks: Callable[[], bool] = lambda: False,
) -> AsyncIterator[stt.SpeechEvent | str]:
    """``events`` without the transcripts (final, interim, preflight) that are backchannels
    said over the agent. While ``agent_has_floor()``: a backchannel, or only a hum when
    ``agent_asks()`` (the reply holds a question: "Yes." may answer it). Begun while the agent
    had the floor and transcribed after it ended (a "right" as its last sentence ends): a
    backchannel, unless the reply asked something. Each final one dropped is handed to
    ``on_dropped``."""
    overlapped = False  # the agent had the floor when the caller's speech began
    async for event in events:
        if not isinstance(event, stt.SpeechEvent):
            yield event
            continue
        if event.type == stt.SpeechEventType.START_OF_SPEECH:
            overlapped = agent_has_floor()
        elif event.type in _TRANSCRIPTS and event.alternatives:
            text = event.alternatives[0].text
            if agent_has_floor():
                drop = is_backchannel(text, hums_only=agent_asks())
            else:
                drop = overlapped and not agent_asks() and is_backchannel(text)
            if drop:
                if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                    log.info("backchannel %r over the agent: not a turn", text)
                    on_dropped(text)
                continue
        yield event
