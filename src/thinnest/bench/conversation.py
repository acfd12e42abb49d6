"""``thinnest bench conversation``: scripted calls that measure turn-taking and what was heard.

A fresh stack (:class:`~thinnest.bench.stack.BenchStack`: LiveKit server, API, worker, the
default offline agent) takes scripted calls: every call but the last goes over the WebSocket
gateway (the session's ``websocket_url``, 16 kHz PCM), the last over WebRTC
(:class:`~thinnest.bench.probe.ProbeClient`). The caller's lines are synthesised once per
voice through the provider registry (espeak-ng variants, Piper, hibari; some with white noise)
and cached as WAVs, like the speech corpus. The microphone never stops (silence between
lines), and each call's lines come in one voice.

A script is a sequence of **events** (:class:`Event`), each run after the agent has been
quiet for ``quiet`` seconds:

- ``question``: a factual question from :data:`QUESTIONS`.
- ``pause``: a question with ``pause_ms`` (300, 600 or 900) of digital silence inserted
  between two words near its middle (the widest quiet gap there in the synthesised audio).
- ``barge_in``: a request for a long answer; ``trigger_s`` (1.0 s) after the agent's first
  loud frame the caller asks a factual question over it.
- ``backchannel``: the same long request; 1.0 s into the answer the caller says "mm-hmm",
  "okay" or "right".
- ``correction``: a question; 1.0 s into the answer "No, I meant ..." asks another (the
  expected fact is the second question's).

All times are the caller's (monotonic seconds): a caller line *starts* when its first sample
leaves for the network and *ends* when its last does; agent audio is a list of received
frames with their RMS, a frame louder than :data:`LOUD` (int16 RMS) is *loud*.

Measures (each defined on that clock):

- **WER**: word error rate of the caller's turns: the word edit distance between the caller's
  lines of an event (backchannels left out) and the engine's final user transcripts received
  during the event (with backchannel words dropped unless the line contains them), summed
  over events and divided by the reference words. Normalised first: lower case, punctuation
  dropped, digits spelt out (:func:`thinnest.bench.metrics.normalise`).
- **right answers**: share of events with an expected fact whose answer contains it: the
  agent's final transcripts received after the caller's last line of the event (those
  marked ``interrupted`` left out), normalised the same way, contain one of the fact's
  spellings as consecutive words (:func:`contains_fact`).
- **v2v**: end of the caller's last line → the agent's first loud frame after it, for every
  event where the agent was silent at that end (question, pause; barge-in and correction
  once the agent has stopped).
- **barge-in stop latency**: for ``barge_in`` and ``correction`` events where the agent was
  speaking when the caller began (a loud frame in the :data:`STOP_GAP` before: a pause
  between its sentences is shorter) and did not simply finish
  its answer during the caller's line (quiet before the line's end, its transcript not marked
  ``interrupted``): start of the caller's
  line → arrival of the agent's last loud frame before its audio stays quiet for
  :data:`STOP_GAP` (800 ms, twice the agent voice's pause between sentences). Not
  stopped within the event: counted as ``not stopped``.
- **false cut-off**: a ``backchannel`` event where the agent, speaking when the backchannel
  began, was stopped by it: its reply's transcript is marked ``interrupted``, or its audio
  went quiet for :data:`CUT_GAP` (800 ms) starting between the backchannel's start and
  1 s after its end and then went on (a paused-and-resumed reply; a quiet span in which the
  reply's own, uninterrupted transcript arrived is its natural end, not a pause).
- **wait after a finished sentence**: for ``question`` events, the engine's
  ``end_of_turn_delay`` of the caller's turn (its ``metrics`` event): the VAD's estimated end
  of speech → the turn committed (silence window, STT final and endpointing wait,
  overlapping). Reported as its mean.
- **premature turn end**: a ``pause`` event where the engine ended the caller's turn inside
  the pause: between the first half's end and the second half's end the engine committed a
  user turn (its ``metrics`` event with ``role: user``), the agent's state turned ``thinking``
  or ``speaking``, or a loud agent frame arrived. Reported per pause length.
- **missed resume**: an interruption after which the agent stayed silent: a ``barge_in`` or
  ``correction`` that stopped the agent and got no loud agent frame after the caller's line
  within ``answer_timeout``, or a ``backchannel`` that cut the agent off (transcript
  ``interrupted``) with no loud agent frame after the cut.

Events whose precondition failed (the agent's answer was over before the trigger) are
``void`` for the measures that need it and still count for WER and answers.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.table import Table

from thinnest.bench.corpus import SAMPLE_RATE, Utterance, load_corpus
from thinnest.bench.metrics import edit_distance, normalise, percentile
from thinnest.bench.probe import ProbeClient, to_48k
from thinnest.bench.stack import BenchStack, StackOptions
from thinnest.config import Settings
from thinnest.errors import ConfigError

__all__ = [
    "QUESTIONS",
    "VOICES",
    "ConversationOptions",
    "Event",
    "build_script",
    "contains_fact",
    "conversation_table",
    "insert_pause",
    "run_conversation_bench",
    "stop_time",
    "summarise",
]

LOUD = 500.0  # int16 RMS of a loud agent frame
STOP_GAP = 0.8  # s of quiet after which the agent has stopped (twice hibari's sentence gap)
CUT_GAP = 0.8  # s of quiet that counts a backchannel's cut-off (sentence gaps are ~0.4 s)
TRIGGER_S = 1.0  # s into the agent's answer that the caller barges in or backchannels
NOISE_SNR_DB = 15.0
PAUSES_MS = (300, 600, 900)
BACKCHANNELS = ("Mm-hmm.", "Okay.", "Right.")
_BACKCHANNEL_WORDS = {"mm", "hmm", "mhm", "mm-hmm", "okay", "ok", "right", "uh", "huh"}

#: (question, spellings of the expected fact)
QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("How many legs does a spider have?", ("eight",)),
    ("What is the capital of France?", ("paris",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("How many days are there in a week?", ("seven",)),
    ("What is the opposite of hot?", ("cold",)),
    ("How many months are there in a year?", ("twelve",)),
    ("What is the largest planet in our solar system?", ("jupiter",)),
    ("What do bees make?", ("honey",)),
    ("How many sides does a triangle have?", ("three",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("What is frozen water called?", ("ice",)),
    ("Which animal says moo?", ("cow", "cows")),
)
#: (first question, correction, spellings of the corrected question's fact)
CORRECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("What is the capital of Spain?", "No, I meant the capital of Italy.", ("rome",)),
    ("How many legs does a dog have?", "No, I meant how many legs a bird has.", ("two",)),
    ("What is the capital of Germany?", "No, I meant the capital of England.", ("london",)),
)
LONG_REQUESTS: tuple[str, ...] = (
    "Please tell me a long story about a dragon and a knight.",
    "Can you describe a day at the beach in a few sentences?",
    "Tell me about the moon in four or five sentences.",
)

#: Caller voices: name → (TTS provider, its options). ``NAME+noise`` adds white noise.
VOICES: dict[str, tuple[str, dict[str, Any]]] = {
    "espeak-us": ("espeak", {"voice": "en-us", "words_per_minute": 160}),
    "espeak-gb": ("espeak", {"voice": "en-gb", "words_per_minute": 180, "pitch": 40}),
    "espeak-f3": ("espeak", {"voice": "en-us+f3", "words_per_minute": 150, "pitch": 65}),
    "piper": ("piper", {"speed": 1.0}),
    "hibari": ("hibari", {"speed": 1.0}),
}
DEFAULT_VOICES = ("espeak-us", "piper", "hibari", "espeak-gb+noise", "piper+noise", "espeak-f3")
KINDS = ("question", "pause", "barge_in", "backchannel", "correction")


@dataclass(frozen=True)
class Event:
    """One scripted event.

    Attributes:
        index: position in the whole script.
        kind: one of :data:`KINDS`.
        lines: what the caller says, in order (the second is said over the agent for
            ``barge_in``, ``backchannel`` and ``correction``).
        fact: spellings of the fact the answer must contain (empty: none checked).
        pause_ms: the silence inside a ``pause`` event's line.
    """

    index: int
    kind: str
    lines: tuple[str, ...]
    fact: tuple[str, ...] = ()
    pause_ms: int = 0

    @property
    def reference(self) -> str:
        """The caller's words that should be heard (backchannels left out)."""
        return " ".join(self.lines if self.kind != "backchannel" else self.lines[:1])


def _long_request(i: int, smoke: bool) -> str:
    return LONG_REQUESTS[0 if smoke else i % len(LONG_REQUESTS)]


def build_script(count: int, *, smoke: bool = False) -> list[Event]:
    """``count`` events cycling through the kinds (deterministic).

    The cycle is pause 300, barge-in, question, backchannel, pause 600, correction, pause 900,
    barge-in, backchannel, question: every kind, each pause length, interruptions often.
    ``smoke``: a pause of 600 ms, a barge-in and a backchannel, whatever ``count``; both
    after the request that draws the longest answers (the story), so that the agent is
    still speaking when the caller's second line comes.
    """
    cycle: list[tuple[str, int]] = [
        ("pause", 300),
        ("barge_in", 0),
        ("question", 0),
        ("backchannel", 0),
        ("pause", 600),
        ("correction", 0),
        ("pause", 900),
        ("barge_in", 0),
        ("backchannel", 0),
        ("question", 0),
    ]
    if smoke:
        cycle, count = [("pause", 600), ("barge_in", 0), ("backchannel", 0)], 3
    events = []
    q = 0  # questions used so far
    for i in range(count):
        kind, pause = cycle[i % len(cycle)]
        if kind in ("question", "pause"):
            text, fact = QUESTIONS[q % len(QUESTIONS)]
            q += 1
            events.append(Event(i, kind, (text,), fact, pause))
        elif kind == "barge_in":
            text, fact = QUESTIONS[q % len(QUESTIONS)]
            q += 1
            events.append(Event(i, kind, (_long_request(i, smoke), text), fact))
        elif kind == "backchannel":
            events.append(
                Event(i, kind, (_long_request(i, smoke), BACKCHANNELS[i % len(BACKCHANNELS)]))
            )
        else:
            first, correction, fact = CORRECTIONS[i % len(CORRECTIONS)]
            events.append(Event(i, kind, (first, correction), fact))
    return events


def contains_fact(answer: str, fact: Sequence[str]) -> bool:
    """Whether normalised ``answer`` contains one of ``fact``'s spellings as whole words."""
    words = normalise(answer)
    for spelling in fact:
        want = normalise(spelling)
        n = len(want)
        if n and any(words[i : i + n] == want for i in range(len(words) - n + 1)):
            return True
    return False


def caller_errors(reference: str, heard: str) -> tuple[int, int]:
    """(word errors, reference words) of what the engine heard of the caller's lines.

    Backchannel words the reference lacks are dropped from ``heard`` first: the engine may
    or may not transcribe an "mm-hmm", and it is no part of the caller's question.
    """
    ref = normalise(reference)
    keep = set(ref)
    hyp = [w for w in normalise(heard) if w in keep or w not in _BACKCHANNEL_WORDS]
    return edit_distance(ref, hyp), len(ref)


def _frame_rms(pcm: np.ndarray, frame: int) -> np.ndarray:
    n = len(pcm) // frame
    return np.sqrt((pcm[: n * frame].astype(np.float64).reshape(n, frame) ** 2).mean(axis=1))


def trim(pcm: np.ndarray, rate: int = SAMPLE_RATE, floor: float = 100.0) -> np.ndarray:
    """``pcm`` without the near-silence (10 ms frames under ``floor`` RMS) at both ends."""
    frame = rate // 100
    loud = np.flatnonzero(_frame_rms(pcm, frame) >= floor)
    if not loud.size:
        return pcm
    return pcm[int(loud[0]) * frame : (int(loud[-1]) + 1) * frame]


def insert_pause(pcm: np.ndarray, pause_ms: int, rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """``pcm`` with ``pause_ms`` of digital silence at its quietest 10 ms frame between 35 %
    and 70 % of its length (a gap between words there); returns the audio and the sample
    where the silence begins."""
    frame = rate // 100
    rms = _frame_rms(pcm, frame)
    lo, hi = int(len(rms) * 0.35), max(int(len(rms) * 0.70), int(len(rms) * 0.35) + 1)
    # The middle of the quietest run: smooth over 50 ms so one quiet frame inside a word loses.
    smooth = np.convolve(rms, np.ones(5) / 5, mode="same")
    at = (lo + int(np.argmin(smooth[lo:hi]))) * frame
    silence = np.zeros(rate * pause_ms // 1000, dtype=np.int16)
    return np.concatenate([pcm[:at], silence, pcm[at:]]), at


# --- analysis of received audio (pure) -----------------------------------------------------

Frames = Sequence[tuple[float, float]]  # (arrival, RMS)


def loud_times(frames: Frames) -> list[float]:
    return [at for at, level in frames if level > LOUD]


def first_loud(frames: Frames, after: float, before: float = math.inf) -> float | None:
    """Arrival of the first loud frame in [after, before)."""
    return next((at for at in loud_times(frames) if after <= at < before), None)


def speaking_at(frames: Frames, t: float, window: float = 0.3) -> bool:
    """Whether a loud frame arrived in the ``window`` before ``t``."""
    return any(t - window <= at <= t for at in loud_times(frames))


def stop_time(frames: Frames, start: float, gap: float, until: float) -> float | None:
    """When the agent's audio went quiet after ``start``: the arrival of the last loud frame
    (at or after ``start``, or ``start`` itself when none came) that is followed by ``gap``
    seconds without a loud frame; ``None`` if no such quiet began before ``until``."""
    loud = [at for at in loud_times(frames) if at >= start]
    last = start
    for at in loud:
        if at - last >= gap:
            return last
        last = at
    return last if until - last >= gap else None


def segments(frames: Frames, origin: float, join: float = 0.15) -> list[tuple[float, float]]:
    """Spans of loud audio (loud frames less than ``join`` s apart), in s from ``origin``."""
    spans: list[tuple[float, float]] = []
    for at in loud_times(frames):
        t = round(at - origin, 2)
        if spans and t - spans[-1][1] < join:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return spans


def gaps(frames: Frames, start: float, end: float, gap: float) -> list[tuple[float, float]]:
    """Quiet spans of at least ``gap`` s between loud frames that began in [start, end]:
    ``(last loud before it, first loud after it or inf)``."""
    loud = loud_times(frames)
    result = []
    for a, b in zip(loud, [*loud[1:], math.inf], strict=True):
        if start <= a <= end and b - a >= gap:
            result.append((a, b))
    return result


@dataclass
class EventResult:
    """What happened in one event (times are the caller's monotonic seconds)."""

    event: Event
    voice: str
    transport: str
    heard: str = ""
    answer: str = ""
    errors: int = 0
    words: int = 0
    right: bool | None = None
    v2v_ms: float | None = None
    turn_wait_ms: float | None = None  # question: the engine's end-of-turn delay
    stop_ms: float | None = None
    stopped: bool | None = None  # barge-in/correction: the agent stopped
    void: bool = False  # the agent was not speaking at the trigger
    false_cutoff: bool | None = None
    premature: bool | None = None
    missed_resume: bool | None = None
    cut_by: str = ""  # backchannel: "interrupted" (its transcript) or "paused" (its audio)
    note: str = ""
    #: s from the event's start: the caller's lines and the agent's loud audio
    timeline: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: the engine's events during the event (interim transcripts left out), ``at`` as above
    engine_events: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in dataclasses.asdict(self).items() if k != "event"},
            "index": self.event.index,
            "kind": self.event.kind,
            "lines": list(self.event.lines),
            "fact": list(self.event.fact),
            "pause_ms": self.event.pause_ms,
        }


def analyse(
    result: EventResult,
    frames: Frames,
    events: Sequence[dict[str, Any]],
    spoken: Sequence[tuple[float, float]],
    *,
    pause_at: float | None,
    trigger: float | None,
    end: float,
    answer_timeout: float,
) -> EventResult:
    """Fill in ``result``'s measures from what the caller received.

    Args:
        result: the event's result to fill in.
        frames: agent audio ``(arrival, RMS)``.
        events: the engine's events (``_at``: arrival) received during the event.
        spoken: ``(start, end)`` of each caller line.
        pause_at: for a pause event, when the silence inside the line began.
        trigger: when the second line was started (interruption events), else None.
        end: when the event was over.
        answer_timeout: seconds after the caller's last line an answer may take.
    """
    event = result.event
    last_end = spoken[-1][1]
    users = [e for e in events if e.get("type") == "transcript" and e.get("role") == "user"]
    result.heard = " ".join(e["text"] for e in users if e.get("final"))
    result.errors, result.words = caller_errors(event.reference, result.heard)
    agents = [
        e
        for e in events
        if e.get("type") == "transcript" and e.get("role") == "agent" and e["_at"] >= last_end
    ]
    result.answer = " ".join(e["text"] for e in agents if not e.get("interrupted"))
    if event.fact:
        result.right = contains_fact(result.answer, event.fact)

    if event.kind == "pause":
        assert pause_at is not None
        state = [
            e
            for e in events
            if pause_at <= e["_at"] < last_end
            and (
                (e.get("type") == "agent_state" and e.get("state") in ("thinking", "speaking"))
                or (e.get("type") == "metrics" and e.get("role") == "user")
            )
        ]
        result.premature = bool(state) or first_loud(frames, pause_at, last_end) is not None
    if event.kind == "question":
        waits = [
            float(e["end_of_turn_delay"])
            for e in events
            if e.get("type") == "metrics"
            and e.get("role") == "user"
            and isinstance(e.get("end_of_turn_delay"), int | float)
        ]
        result.turn_wait_ms = 1000 * waits[-1] if waits else None
    if event.kind in ("question", "pause"):
        first = first_loud(frames, last_end, last_end + answer_timeout)
        result.v2v_ms = None if first is None else 1000 * (first - last_end)
        return result

    assert trigger is not None
    start = spoken[1][0]
    # Speaking: a loud frame less than a pause between sentences before (a barge-in into
    # that pause still stops the reply).
    if not speaking_at(frames, start, window=STOP_GAP):
        result.void = True
        result.note = "the agent was silent when the caller began its second line"
    if event.kind in ("barge_in", "correction"):
        stopped = stop_time(frames, start, STOP_GAP, end)
        cut = any(
            e.get("type") == "transcript" and e.get("role") == "agent" and e.get("interrupted")
            for e in events
            if e["_at"] >= start
        )
        if not result.void and not cut and stopped is not None and stopped <= last_end:
            # its answer ended on its own while the caller spoke: nothing was interrupted
            result.void = True
            result.note = "the agent's answer ended on its own during the caller's line"
        if not result.void:
            result.stopped = stopped is not None
            if stopped is not None:
                result.stop_ms = max(0.0, 1000 * (stopped - start))
        quiet_from = stopped if stopped is not None else end
        if quiet_from <= last_end:  # silent at the end of the caller's line: an answer is timed
            first = first_loud(frames, last_end, last_end + answer_timeout)
            result.v2v_ms = None if first is None else 1000 * (first - last_end)
            if not result.void:
                result.missed_resume = first is None
        elif not result.void and stopped is not None:
            first = first_loud(frames, stopped + STOP_GAP, last_end + answer_timeout)
            result.missed_resume = first is None
        return result

    # backchannel
    if result.void:
        return result
    interrupted = any(
        e.get("type") == "transcript" and e.get("role") == "agent" and e.get("interrupted")
        for e in events
        if e["_at"] >= start
    )
    finished = [  # the reply's own transcript: it ended there, whole
        e["_at"]
        for e in events
        if e.get("type") == "transcript" and e.get("role") == "agent" and not e.get("interrupted")
    ]
    paused = [
        (a, b)
        for a, b in gaps(frames, start, last_end + 1.0, CUT_GAP)
        if b < math.inf and not any(a <= at <= b for at in finished)
    ]
    result.false_cutoff = interrupted or bool(paused)
    result.cut_by = "interrupted" if interrupted else "paused" if paused else ""
    if interrupted:
        went_quiet = stop_time(frames, start, STOP_GAP, end)
        after = first_loud(frames, (went_quiet or start) + STOP_GAP, end)
        result.missed_resume = after is None
    else:
        result.missed_resume = False
    return result


# --- the caller's lines ---------------------------------------------------------------------


def parse_voice(name: str) -> tuple[str, dict[str, Any], float | None]:
    """``(tts, options, snr_db)`` of a voice name (``piper``, ``espeak-gb+noise``)."""
    base, _, suffix = name.partition("+")
    if base not in VOICES or suffix not in ("", "noise"):
        known = ", ".join(VOICES)
        raise ConfigError(f"unknown voice {name!r}: one of {known}, each optionally +noise")
    tts, options = VOICES[base]
    return tts, dict(options), NOISE_SNR_DB if suffix else None


async def synthesise_lines(
    texts: Sequence[str], voice: str, cache_dir: Path, settings: Settings
) -> dict[str, np.ndarray]:
    """Each text in ``voice`` (16 kHz int16, trimmed), cached as WAVs under ``cache_dir``."""
    tts, options, snr = parse_voice(voice)
    # The index seeds the noise and names the file: a stable one per text.
    items = [
        Utterance(sum(map(ord, text)) % 1000, text, tts, options, snr) for text in sorted(texts)
    ]
    corpus = await load_corpus(items, cache_dir, settings)
    return {u.text: trim(pcm) for u, pcm in corpus}


# --- transports -----------------------------------------------------------------------------


class _Line(abc.ABC):
    """A caller's side of one call: say lines, record agent audio and events."""

    @property
    @abc.abstractmethod
    def frames(self) -> list[tuple[float, float]]: ...

    @abc.abstractmethod
    async def say(self, pcm: np.ndarray) -> tuple[float, float]: ...

    @abc.abstractmethod
    def events(self) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...


class _WebSocketLine(_Line):
    """Over the gateway: 20 ms frames of 16 kHz PCM both ways, sent in real time."""

    def __init__(self) -> None:
        self._frames: list[tuple[float, float]] = []
        self._events: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[tuple[bytes, asyncio.Future[tuple[float, float]]]]
        self._queue = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.ws: Any = None

    async def open(self, url: str, token: str) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            url, open_timeout=30, additional_headers={"Authorization": f"Bearer {token}"}
        )
        await self.ws.send(json.dumps({"type": "start", "sample_rate": SAMPLE_RATE}))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._microphone())]

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for message in self.ws:
                now = time.monotonic()
                if isinstance(message, bytes):
                    pcm = np.frombuffer(message, dtype=np.int16).astype(np.float64)
                    self._frames.append((now, float(np.sqrt(np.mean(pcm**2))) if pcm.size else 0.0))
                else:
                    event = json.loads(message)
                    event["_at"] = now
                    self._events.append(event)

    async def _microphone(self) -> None:
        from websockets.exceptions import ConnectionClosed

        size = SAMPLE_RATE * 20 // 1000
        silence = bytes(2 * size)
        start, sent = time.monotonic(), 0
        speech, done, began = b"", None, 0.0
        with contextlib.suppress(ConnectionClosed):
            while True:
                if not speech and done is None and not self._queue.empty():
                    speech, done = self._queue.get_nowait()
                    began = time.monotonic()
                if speech:
                    frame, speech = speech[: 2 * size], speech[2 * size :]
                    await self.ws.send(frame.ljust(2 * size, b"\0"))
                    if not speech and done is not None:
                        done.set_result((began, time.monotonic()))
                        done = None
                else:
                    await self.ws.send(silence)
                sent += 1
                await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))

    async def say(self, pcm: np.ndarray) -> tuple[float, float]:
        done: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((pcm.astype(np.int16).tobytes(), done))
        return await done

    @property
    def frames(self) -> list[tuple[float, float]]:
        return self._frames

    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.send(json.dumps({"type": "end"}))
            await self.ws.close()


class _WebRtcLine(_Line):
    """Over WebRTC: the latency bench's caller (always-on 48 kHz microphone)."""

    def __init__(self, client: ProbeClient) -> None:
        self.client = client

    @property
    def frames(self) -> list[tuple[float, float]]:
        audio = self.client.audio
        return list(zip(audio.arrivals, audio.levels, strict=False))

    async def say(self, pcm: np.ndarray) -> tuple[float, float]:
        pcm48 = to_48k(pcm, SAMPLE_RATE)
        end = await self.client.say(pcm48)
        return end - len(pcm48) / 48000, end

    def events(self) -> list[dict[str, Any]]:
        return [{**e, "_at": e["_received_at"]} for e in self.client.received]

    async def aclose(self) -> None:
        await self.client.aclose()


# --- running ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversationOptions:
    """What the conversation bench runs.

    Attributes:
        events: scripted events in all.
        per_call: events in one call (then a new call, in the next voice, starts).
        smoke: a pause, a barge-in and a backchannel in two calls (gateway, WebRTC).
        voices: caller voices (names of :data:`VOICES`, optionally ``+noise``).
        webrtc: the last call goes over WebRTC (when there are two calls or more).
        quiet: seconds of agent silence that end its answer.
        answer_timeout: seconds an answer may take.
        models: the shared model services serve the calls.
        warmup: the first call begins with an unmeasured question (the first answer of a
            fresh stack waits for the models to warm up: ~15 s here).
        workdir: where the stack keeps its files (a fresh directory).
        settings: settings of the stack's API and worker (``{"interruption_min_duration":
            "0.3"}``), passed as ``THINNEST_*`` variables: a trade-off is measured without
            changing the defaults.
        agent: fields of the bench's agent (``{"providers": {"vad": {...}}}``), as
            ``POST /agents`` takes them; default the default agent.
    """

    events: int = 30
    per_call: int = 5
    smoke: bool = False
    voices: tuple[str, ...] = DEFAULT_VOICES
    webrtc: bool = True
    quiet: float = 1.5
    answer_timeout: float = 20.0
    models: bool = True
    warmup: bool = True
    settings: dict[str, str] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None


WARMUP = "Hello, can you hear me?"


async def _wait_quiet(line: _Line, quiet: float, within: float) -> None:
    """Until no loud agent frame has arrived for ``quiet`` s (at most ``within`` s)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        loud = loud_times(line.frames[-400:])
        if not loud or time.monotonic() - loud[-1] >= quiet:
            return
        await asyncio.sleep(0.05)


async def _wait_loud(line: _Line, after: float, within: float) -> float | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = first_loud(line.frames[-400:], after)
        if found is not None:
            return found
        await asyncio.sleep(0.01)
    return None


async def run_event(
    line: _Line,
    event: Event,
    audio: dict[str, np.ndarray],
    *,
    voice: str,
    transport: str,
    options: ConversationOptions,
) -> EventResult:
    """Say the event's lines with its timing, wait for the agent, measure."""
    began = time.monotonic()
    result = EventResult(event, voice, transport)
    pause_at: float | None = None
    trigger: float | None = None
    if event.kind in ("question", "pause"):
        pcm = audio[event.lines[0]]
        if event.kind == "pause":
            pcm, at = insert_pause(pcm, event.pause_ms)
        start, end = await line.say(pcm)
        if event.kind == "pause":
            pause_at = start + at / SAMPLE_RATE
        spoken = [(start, end)]
        if await _wait_loud(line, end, options.answer_timeout) is not None:
            await _wait_quiet(line, options.quiet, 60)
    else:
        first = await line.say(audio[event.lines[0]])
        heard = await _wait_loud(line, first[1], options.answer_timeout)
        trigger = (heard if heard is not None else time.monotonic()) + TRIGGER_S
        await asyncio.sleep(max(0.0, trigger - time.monotonic()))
        second = await line.say(audio[event.lines[1]])
        spoken = [first, second]
        # the agent stops (or not), then answers the new line (or goes on)
        await asyncio.sleep(STOP_GAP + 0.5)
        await _wait_loud(line, second[1] + 0.3, options.answer_timeout)
        await _wait_quiet(line, options.quiet, 60)
    await asyncio.sleep(0.7)  # the answer's transcript comes after its audio
    end_at = time.monotonic()
    events = [e for e in line.events() if began <= e["_at"] <= end_at]
    frames = [f for f in line.frames if began <= f[0] <= end_at]
    result.timeline = {
        "caller": [(round(a - began, 2), round(b - began, 2)) for a, b in spoken],
        "agent": segments(frames, began),
    }
    result.engine_events = [
        {**{k: v for k, v in e.items() if not k.startswith("_")}, "at": round(e["_at"] - began, 2)}
        for e in events
        if e.get("type") != "transcript" or e.get("final") or e.get("role") == "agent"
    ]
    return analyse(
        result,
        frames,
        events,
        spoken,
        pause_at=pause_at,
        trigger=trigger,
        end=end_at,
        answer_timeout=options.answer_timeout,
    )


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def _mean_stats(values: list[float]) -> dict[str, float]:
    return {**_stats(values), "mean": sum(values) / len(values) if values else math.nan}


def summarise(results: Sequence[EventResult]) -> dict[str, Any]:
    """The run's measures (see the module's docstring)."""
    errors = sum(r.errors for r in results)
    words = sum(r.words for r in results)
    checked = [r for r in results if r.right is not None]
    barge = [r for r in results if r.event.kind in ("barge_in", "correction") and not r.void]
    backchannels = [r for r in results if r.event.kind == "backchannel" and not r.void]
    premature: dict[str, dict[str, int]] = {}
    for r in results:
        if r.event.kind == "pause":
            row = premature.setdefault(str(r.event.pause_ms), {"premature": 0, "pauses": 0})
            row["pauses"] += 1
            row["premature"] += bool(r.premature)
    resumable = [r for r in results if r.missed_resume is not None]
    return {
        "events": len(results),
        "wer": errors / words if words else math.nan,
        "wer_errors": errors,
        "wer_words": words,
        "right_answers": sum(bool(r.right) for r in checked),
        "checked_answers": len(checked),
        "right_share": sum(bool(r.right) for r in checked) / len(checked) if checked else math.nan,
        "v2v_ms": _stats([r.v2v_ms for r in results if r.v2v_ms is not None]),
        "turn_wait_ms": _mean_stats(
            [r.turn_wait_ms for r in results if r.turn_wait_ms is not None]
        ),
        "barge_in_stop_ms": _stats([r.stop_ms for r in barge if r.stop_ms is not None]),
        "barge_ins": len(barge),
        "not_stopped": sum(1 for r in barge if r.stopped is False),
        "false_cutoffs": sum(bool(r.false_cutoff) for r in backchannels),
        "backchannels": len(backchannels),
        "premature_by_pause_ms": premature,
        "missed_resumes": sum(bool(r.missed_resume) for r in resumable),
        "resumable": len(resumable),
        "void": sum(r.void for r in results),
        "unanswered": sum(
            1 for r in results if r.event.kind in ("question", "pause") and r.v2v_ms is None
        ),
    }


async def run_conversation_bench(
    options: ConversationOptions,
    settings: Settings,
    *,
    progress: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Start the stack, make the scripted calls, return the results (see docs/benchmarks.md)."""
    from thinnest.bench.latency import machine

    started = time.time()
    for voice in options.voices:
        parse_voice(voice)
    script = build_script(options.events, smoke=options.smoke)
    per_call = 2 if options.smoke else max(1, options.per_call)
    calls = [script[i : i + per_call] for i in range(0, len(script), per_call)]
    cache = settings.data_dir / "bench" / "conversation-corpus"
    texts = sorted({line for event in script for line in event.lines} | {WARMUP})
    audio: dict[str, dict[str, np.ndarray]] = {}
    voices = [options.voices[i % len(options.voices)] for i in range(len(calls))]
    for voice in dict.fromkeys(voices):
        progress(f"synthesising / loading the caller's lines in {voice}")
        audio[voice] = await synthesise_lines(texts, voice, cache, settings)
    workdir = options.workdir or settings.data_dir / "bench" / f"conversation-{int(started)}"
    results: list[EventResult] = []
    errors: list[str] = []
    progress(f"starting LiveKit, API and worker in {workdir}")
    stack_opts = StackOptions(
        workdir=workdir,
        models=options.models,
        worker_idle_processes=1,
        env={f"THINNEST_{name.upper()}": value for name, value in options.settings.items()},
    )
    with BenchStack(stack_opts, settings) as stack:
        # By default the default agent (offline models, default prompt); or the agent asked for.
        agent = stack.create_agent(**options.agent)
        async with httpx.AsyncClient(timeout=120) as http:
            for n, (events, voice) in enumerate(zip(calls, voices, strict=True)):
                webrtc = options.webrtc and len(calls) > 1 and n == len(calls) - 1
                transport = "webrtc" if webrtc else "websocket"
                progress(f"call {n + 1}/{len(calls)} ({transport}, {voice}): {len(events)} events")
                line: _Line | None = None
                try:
                    session = await stack.start_session(http, agent)
                    if webrtc:
                        client = ProbeClient(session["livekit_url"], session["token"])
                        await client.connect()
                        line = _WebRtcLine(client)
                    else:
                        ws_line = _WebSocketLine()
                        await ws_line.open(session["websocket_url"], session["token"])
                        line = ws_line
                    if await _wait_loud(line, 0.0, 180) is None:
                        raise TimeoutError("no greeting within 180 s")
                    await _wait_quiet(line, options.quiet, 60)
                    if n == 0 and options.warmup and not options.smoke:
                        progress("  warm-up question (not measured)")
                        _, said = await line.say(audio[voice][WARMUP])
                        await _wait_loud(line, said, 60)
                        await _wait_quiet(line, options.quiet, 60)
                    for event in events:
                        result = await run_event(
                            line,
                            event,
                            audio[voice],
                            voice=voice,
                            transport=transport,
                            options=options,
                        )
                        progress(f"  {_line(result)}")
                        results.append(result)
                except Exception as exc:  # one failed call must not lose the run
                    errors.append(repr(exc))
                    progress(f"  call failed: {exc!r}")
                finally:
                    if line is not None:
                        await line.aclose()
    return {
        "bench": "conversation",
        "started": datetime.fromtimestamp(started, UTC).isoformat(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine(),
        "options": {**dataclasses.asdict(options), "workdir": str(workdir)},
        "summary": summarise(results),
        "by_transport": {
            t: summarise([r for r in results if r.transport == t])
            for t in sorted({r.transport for r in results})
        },
        "errors": errors,
        "events": [r.describe() for r in results],
    }


def _line(r: EventResult) -> str:
    parts = [f"#{r.event.index} {r.event.kind}"]
    if r.event.pause_ms:
        parts.append(f"{r.event.pause_ms}ms premature={r.premature}")
    if r.v2v_ms is not None:
        parts.append(f"v2v={r.v2v_ms:.0f}")
    if r.stop_ms is not None:
        parts.append(f"stop={r.stop_ms:.0f}")
    if r.false_cutoff is not None:
        parts.append(f"cut={r.false_cutoff}")
    if r.missed_resume is not None:
        parts.append(f"missed_resume={r.missed_resume}")
    if r.void:
        parts.append("void")
    parts.append(f"heard={r.heard!r} answer={r.answer[:80]!r} right={r.right}")
    return " ".join(parts)


# --- reporting ----------------------------------------------------------------------------


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.1f} %"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f} ms"


def conversation_table(results: dict[str, Any]) -> Table:
    """The run's measures against issue 22's targets."""
    table = Table(title="thinnest bench conversation: scripted calls against the default agent")
    for name in ("measure", "all", *results["by_transport"], "target"):
        table.add_column(name, justify="left" if name == "measure" else "right")
    columns = [results["summary"], *results["by_transport"].values()]

    def row(name: str, cell: Callable[[dict[str, Any]], str], target: str) -> None:
        table.add_row(name, *(cell(s) for s in columns), target)

    row("events", lambda s: str(s["events"]), "")
    row("WER of the caller's turns", lambda s: _pct(s["wer"]), "≤ 10 %")
    row(
        "right answers",
        lambda s: f"{s['right_answers']}/{s['checked_answers']} ({_pct(s['right_share'])})",
        "≥ 90 %",
    )
    row("v2v p50", lambda s: _ms(s["v2v_ms"]["p50"]), "")
    row("v2v p95", lambda s: _ms(s["v2v_ms"]["p95"]), "")
    row(
        "wait after a finished sentence, mean",
        lambda s: _ms(s["turn_wait_ms"]["mean"]),
        "≤ 300 ms",
    )
    row("barge-in stop p50", lambda s: _ms(s["barge_in_stop_ms"]["p50"]), "")
    row("barge-in stop p95", lambda s: _ms(s["barge_in_stop_ms"]["p95"]), "≤ 300 ms")
    row("barge-ins not stopped", lambda s: f"{s['not_stopped']}/{s['barge_ins']}", "0")
    row("false cut-offs", lambda s: f"{s['false_cutoffs']}/{s['backchannels']}", "0")
    for pause in (str(p) for p in PAUSES_MS):

        def cell(s: dict[str, Any], pause: str = pause) -> str:
            p = s["premature_by_pause_ms"].get(pause)
            return f"{p['premature']}/{p['pauses']}" if p else "-"

        row(f"premature turn ends, {pause} ms pause", cell, "≤ 10 %" if pause == "600" else "")
    row("missed resumes", lambda s: f"{s['missed_resumes']}/{s['resumable']}", "0")
    row("void events / unanswered", lambda s: f"{s['void']} / {s['unanswered']}", "")
    machine = results["machine"]
    table.caption = (
        f"{machine['cpus']} CPUs, load {machine['load_average']}, {results['duration_s']} s"
        + (f"; failed calls: {len(results['errors'])}" if results["errors"] else "")
    )
    return table


def conversation_chart(results: dict[str, Any], path: Path) -> Path:
    """A PNG of a run: each event's v2v and barge-in stop latency (left), and the shares
    against their targets (right)."""
    from thinnest.bench.charts import _pyplot

    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    events = results["events"]
    for x, (key, label) in enumerate((("v2v_ms", "v2v"), ("stop_ms", "barge-in stop"))):
        for transport, marker in (("websocket", "o"), ("webrtc", "s")):
            values = [e[key] for e in events if e[key] is not None and e["transport"] == transport]
            jitter: list[float] = list(np.linspace(-0.15, 0.15, len(values)))
            left.scatter(
                [x + j for j in jitter],
                values,
                marker=marker,
                alpha=0.7,
                label=f"{label}, {transport}",
            )
    left.axhline(300, color="red", linestyle="--", linewidth=1, label="barge-in target 300 ms")
    left.set_xticks([0, 1], ["end of speech → answer", "caller starts → agent silent"])
    left.set_ylabel("ms")
    left.set_title("Per event")
    left.legend(fontsize=7)
    s = results["summary"]

    def share(a: int, b: int) -> float:
        return 100 * a / b if b else math.nan

    bars: dict[str, tuple[float, float]] = {
        "WER": (100 * s["wer"], 10.0),
        "wrong answers": (100 - 100 * s["right_share"], 10.0),
        "false cut-offs": (share(s["false_cutoffs"], s["backchannels"]), 0.0),
        "missed resumes": (share(s["missed_resumes"], s["resumable"]), 0.0),
    }
    for pause in PAUSES_MS:
        row = s["premature_by_pause_ms"].get(str(pause))
        if row:
            target = 10.0 if pause == 600 else math.nan
            bars[f"premature, {pause} ms"] = (share(row["premature"], row["pauses"]), target)
    names = list(bars)
    right.barh(names, [bars[n][0] for n in names], color="tab:blue", alpha=0.7)
    right.scatter(
        [bars[n][1] for n in names], names, color="red", marker="|", s=300, label="target"
    )
    right.set_xlabel("% (lower is better)")
    right.set_title("Shares against issue 22's targets")
    right.invert_yaxis()
    right.legend(fontsize=7)
    load = results["machine"]["load_average"][0]
    fig.suptitle(f"thinnest bench conversation: {s['events']} events, load {load}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":  # python -m thinnest.bench.conversation RESULTS.json OUT.png
    import sys

    conversation_chart(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
