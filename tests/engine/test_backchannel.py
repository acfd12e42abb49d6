"""Which transcripts are backchannels, and that only those said over the agent are dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace

import pytest
from livekit.agents import stt
from livekit.agents.voice import UserStateChangedEvent

from thinnest.engine.backchannel import is_backchannel, without_backchannels
from thinnest.engine.spoken import RESUME_AFTER_BACKCHANNEL, SpeakingAgent


@pytest.mark.parametrize(
    "text",
    [
        "Mm-hmm.",
        "mhm",
        "Okay.",
        "Okay, okay.",
        "Right.",
        "Yeah, yeah, yeah.",
        "Oh, I see.",
        "Uh-huh",
        "Got it.",
        "All right.",
        "OK",
        "yes, right",
        "M-M-M-M",
        "Hmm.",
        "Mmm, okay.",
        "And then...",  # Whisper's spelling of a hum over speech (conversation bench)
        "And.",
        "And m m m m",  # a long hum after "and": one hum, two words
        "Go on, please.",
    ],
)
def test_backchannels(text: str) -> None:
    assert is_backchannel(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "...",
        "Stop.",
        "No.",
        "Wait.",
        "Okay, but what about Tuesday?",
        "Right, I meant Paris.",
        "Yeah, tell me the weather.",
        "I see a problem.",
        "Okay okay okay okay okay",
        "Yes, 2.",
        "Okay, 10:30.",
        "What?",
        "good morning",
        "And then what?",
        "And Tuesday.",
        "Please stop.",
    ],
)
def test_not_backchannels(text: str) -> None:
    assert not is_backchannel(text)


def _final(text: str) -> stt.SpeechEvent:
    return stt.SpeechEvent(
        type=stt.SpeechEventType.FINAL_TRANSCRIPT,
        alternatives=[stt.SpeechData(language="en", text=text)],
    )


async def _events(*items: stt.SpeechEvent) -> AsyncIterator[stt.SpeechEvent | str]:
    for item in items:
        yield item


async def _texts(floor: bool, *texts: str) -> tuple[list[str], list[str]]:
    dropped: list[str] = []
    events = _events(
        stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH), *(_final(t) for t in texts)
    )
    kept = [
        e.alternatives[0].text if isinstance(e, stt.SpeechEvent) and e.alternatives else "EOS"
        async for e in without_backchannels(events, lambda: floor, on_dropped=dropped.append)
    ]
    return kept, dropped


async def test_over_the_agent_a_backchannel_is_dropped_and_words_pass() -> None:
    kept, dropped = await _texts(True, "Mm-hmm.", "Stop, I have a question.", "Okay.")
    assert kept == ["EOS", "Stop, I have a question."]
    assert dropped == ["Mm-hmm.", "Okay."]


async def test_with_the_agent_silent_okay_is_an_answer() -> None:
    kept, dropped = await _texts(False, "Okay.", "Yes.")
    assert kept == ["EOS", "Okay.", "Yes."] and dropped == []


async def test_a_backchannel_begun_over_the_agent_is_dropped_after_it_finished() -> None:
    """ "Right." said as the agent's reply ends is transcribed once the agent is silent: it
    was an acknowledgement all the same, not a turn to answer."""
    floor = [True]
    dropped: list[str] = []

    async def events() -> AsyncIterator[stt.SpeechEvent]:
        yield stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
        floor[0] = False  # the reply ends while the caller speaks
        yield stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH)
        yield _final("Right.")
        yield stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)  # agent silent now
        yield _final("Okay.")

    kept = [
        e.type
        async for e in without_backchannels(events(), lambda: floor[0], on_dropped=dropped.append)
    ]
    assert dropped == ["Right."]
    assert kept.count(stt.SpeechEventType.FINAL_TRANSCRIPT) == 1  # the later "Okay." is a turn


async def test_yes_overlapping_the_end_of_a_question_answers_it() -> None:
    floor = [True]

    async def events() -> AsyncIterator[stt.SpeechEvent]:
        yield stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
        floor[0] = False  # "Shall I book it?" ends while the caller says "Yes."
        yield _final("Yes.")

    kept = [
        e.alternatives[0].text
        async for e in without_backchannels(events(), lambda: floor[0], agent_asks=lambda: True)
        if e.alternatives
    ]
    assert kept == ["Yes."]


async def test_over_a_question_still_playing_yes_answers_it_and_a_hum_does_not() -> None:
    async def events() -> AsyncIterator[stt.SpeechEvent]:
        yield stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
        yield _final("Yeah, sure.")
        yield stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH)
        yield _final("Mm-hmm.")

    dropped: list[str] = []
    kept = [
        e.alternatives[0].text
        async for e in without_backchannels(
            events(), lambda: True, on_dropped=dropped.append, agent_asks=lambda: True
        )
        if e.alternatives
    ]
    assert kept == ["Yeah, sure."] and dropped == ["Mm-hmm."]


# --- the paused reply resumes at once after a backchannel --------------------------------


class _Activity:
    """The two fields of livekit-agents' ``AgentActivity`` that a backchannel's resume uses
    (its pause and the timer the end of speech arms), with a session that records listeners."""

    def __init__(self, handle: object) -> None:
        self._paused_speech = SimpleNamespace(handle=handle, timeout=1.5)
        self._false_interruption_timer: object | None = None
        self.started: list[float] = []
        self.listeners: dict[str, Callable[..., None]] = {}
        self.session = SimpleNamespace(
            current_speech=handle, on=lambda name, cb: self.listeners.__setitem__(name, cb)
        )

    def _start_false_interruption_timer(self, timeout: float) -> None:
        self.started.append(timeout)


def _agent(activity: _Activity) -> SpeakingAgent:
    agent = SpeakingAgent(instructions="x")
    agent._activity = activity  # type: ignore[assignment]
    return agent


def test_a_backchannel_heard_before_the_end_of_speech_shortens_the_pause_at_its_end() -> None:
    activity = _Activity(handle := object())
    agent = _agent(activity)
    agent._resume_soon("Okay.")
    # voiced frames until the end of speech set the timeout back to the configured one
    activity._paused_speech.timeout = 1.5
    activity.listeners["user_state_changed"](
        UserStateChangedEvent(old_state="speaking", new_state="listening")
    )
    assert activity._paused_speech.timeout == RESUME_AFTER_BACKCHANNEL
    assert activity._paused_speech.handle is handle and activity.started == []


def test_a_backchannel_heard_after_the_end_of_speech_restarts_the_running_timer() -> None:
    activity = _Activity(object())
    activity._false_interruption_timer = object()  # armed by the end of speech, 1.5 s
    _agent(activity)._resume_soon("Mm-hmm.")
    assert activity.started == [RESUME_AFTER_BACKCHANNEL]


def test_no_resume_is_scheduled_for_another_reply_than_the_paused_one() -> None:
    activity = _Activity(object())
    activity.session.current_speech = object()  # a new reply since the pause
    agent = _agent(activity)
    agent._resume_soon("Okay.")
    assert activity.started == [] and activity.listeners == {}
