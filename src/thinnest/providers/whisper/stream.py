"""The streaming recogniser of the ``whisper`` STT: utterances cut by a VAD, decoded ahead.

Each utterance (from the VAD's start of speech, with up to ``PREROLL`` of the audio before
it, to its end of speech) is decoded once more than it must be, at most: a *preflight* at
the first pause of ``preflight_silence`` (the final transcript when the pause is the end),
or a greedy *interim* every ``interim_interval`` of speech. One speculative decode runs at
a time: the model decodes one window at a time, so a second one would only queue up and
delay the final transcript behind it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from livekit.agents import APIConnectOptions, APIError, stt
from livekit.agents.utils import aio
from livekit.agents.vad import VADEvent, VADEventType, VADStream

from livekit import rtc
from thinnest.errors import ProviderError
from thinnest.providers._audio import to_mono_float32
from thinnest.providers.whisper.options import SAMPLE_RATE, WhisperOptions

if TYPE_CHECKING:
    from thinnest.providers.whisper.stt import BaseWhisperSTT

__all__ = ["WhisperStream"]

PREROLL = 0.5  # seconds of audio kept before the VAD's start of speech


@dataclasses.dataclass
class _Utterance:
    """The utterance being spoken: its audio, and the decodes of it made ahead of its end."""

    speech: list[rtc.AudioFrame]
    preflight: asyncio.Task[str] | None = None  # the final transcript, if this pause is the end
    interim: asyncio.Task[str] | None = None  # a partial transcript not sent yet
    interim_at: float = 0.0  # seconds of speech at the last partial transcript


class WhisperStream(stt.RecognizeStream):
    """Cuts the audio into utterances with a Silero VAD and transcribes each with Whisper."""

    def __init__(
        self,
        whisper: BaseWhisperSTT,
        *,
        options: WhisperOptions,
        vad: Any,
        language: str,
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(stt=whisper, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._whisper = whisper
        self._opts = options
        self._vad = vad
        self._language = language
        self._preroll: collections.deque[rtc.AudioFrame] = collections.deque()
        self._utterance: _Utterance | None = None  # None between utterances
        # The speculative (preflight or interim) decode still running, read or not.
        self._running: asyncio.Task[str] | None = None

    async def _transcribe(self, frames: list[rtc.AudioFrame], final: bool) -> str:
        audio = to_mono_float32(frames, SAMPLE_RATE)
        if not audio.size:
            return ""
        try:
            text, _ = await asyncio.to_thread(
                self._whisper.transcribe, audio, self._language, final=final
            )
        except APIError:
            raise  # the shared model service's error: livekit-agents retries it or gives up
        except Exception as exc:
            raise ProviderError(f"whisper failed: {exc}", retryable=False) from exc
        return text

    def _spawn(self, frames: list[rtc.AudioFrame], *, final: bool = True) -> asyncio.Task[str]:
        """Transcribe ``frames`` in a task: ``final`` with the option's beams, else greedy."""
        task = asyncio.create_task(self._transcribe(frames, final))
        # A preflight or interim transcript may be dropped unread: never leave its error
        # unretrieved (the final transcription of the same audio reports it).
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    def _send(self, kind: stt.SpeechEventType, text: str = "", **fields: Any) -> None:
        alternatives = [stt.SpeechData(language=self._language, text=text)] if text else []  # type: ignore[arg-type]
        self._event_ch.send_nowait(stt.SpeechEvent(type=kind, alternatives=alternatives, **fields))

    async def _run(self) -> None:
        vad_stream = self._vad.stream()
        tasks = [
            asyncio.create_task(self._forward(vad_stream)),
            asyncio.create_task(self._recognize(vad_stream)),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await aio.cancel_and_wait(*tasks)
            await vad_stream.aclose()

    async def _forward(self, vad_stream: VADStream) -> None:
        """The input's frames (and flushes) to the VAD."""
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                vad_stream.flush()
            else:
                vad_stream.push_frame(item)
        vad_stream.end_input()

    async def _recognize(self, vad_stream: VADStream) -> None:
        """The VAD's events to speech events and transcripts."""
        async for ev in vad_stream:
            if ev.type == VADEventType.INFERENCE_DONE:
                self._on_audio(ev)
            elif ev.type == VADEventType.START_OF_SPEECH:
                self._on_start()
            elif ev.type == VADEventType.END_OF_SPEECH and self._utterance is not None:
                await self._on_end(ev, self._utterance)

    def _idle(self) -> bool:
        """Whether no speculative decode is running."""
        return self._running is None or self._running.done()

    def _speculate(self, utterance: _Utterance, *, final: bool) -> asyncio.Task[str]:
        """Decode the utterance so far ahead of its end: a preflight, or greedy (interim)."""
        self._running = self._spawn(list(utterance.speech), final=final)
        return self._running

    def _send_interim(self, utterance: _Utterance) -> None:
        """Send the partial transcript once its decode is done (none when it failed)."""
        interim = utterance.interim
        if interim is not None and interim.done():
            partial = "" if interim.cancelled() or interim.exception() else interim.result()
            if partial:
                self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, partial)
            utterance.interim = None

    def _on_audio(self, ev: VADEvent) -> None:
        """Frames the VAD has judged: the pre-roll between utterances, else speech."""
        utterance = self._utterance
        if utterance is None:
            self._preroll.extend(ev.frames)
            while len(self._preroll) > 1 and _duration(self._preroll) > PREROLL:
                self._preroll.popleft()
            return
        opts = self._opts
        utterance.speech.extend(ev.frames)
        if ev.raw_accumulated_silence == 0.0:
            # The user speaks on: the preflight is no final, but it is a fine partial
            # transcript, for free.
            preflight = utterance.preflight
            if preflight is not None and opts.interim_results and utterance.interim is None:
                utterance.interim, utterance.interim_at = preflight, ev.speech_duration
            utterance.preflight = None
        elif (
            utterance.preflight is None
            and self._idle()
            and ev.raw_accumulated_silence >= opts.preflight_silence
        ):
            utterance.preflight = self._speculate(utterance, final=True)
        self._send_interim(utterance)
        if (
            opts.interim_results
            and utterance.interim is None
            and utterance.preflight is None
            and self._idle()
            and ev.speech_duration - utterance.interim_at >= opts.interim_interval
        ):
            utterance.interim_at = ev.speech_duration
            utterance.interim = self._speculate(utterance, final=False)

    def _on_start(self) -> None:
        """A new utterance, from the pre-roll on."""
        self._utterance = _Utterance(list(self._preroll))
        self._preroll.clear()
        self._send(stt.SpeechEventType.START_OF_SPEECH)

    async def _on_end(self, ev: VADEvent, utterance: _Utterance) -> None:
        """The utterance's final transcript: its preflight's, else a decode of it now."""
        self._utterance = None
        self._send_interim(utterance)  # a partial that finished with the last frame still counts
        end_time = time.time() - ev.silence_duration - ev.inference_duration
        self._send(stt.SpeechEventType.END_OF_SPEECH, speech_end_time=end_time)
        text = None
        if utterance.preflight is not None:
            try:
                text = await utterance.preflight
            except APIError:
                pass  # the model service was busy or away a moment: decode it again
        if text is None:
            text = await self._spawn(utterance.speech)
        if text:
            self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, text, speech_end_time=end_time)
        self._running = None


def _duration(frames: collections.deque[rtc.AudioFrame]) -> float:
    return sum(f.samples_per_channel for f in frames) / SAMPLE_RATE
