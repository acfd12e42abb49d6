"""The ``whisper`` STT: the model, its decodes, and the livekit-agents ``stt.STT``.

A decode runs the encoder on a window the length of the utterance (``window: fit``) and
falls back to Whisper's 30 s window where a short one makes it loop; its text is judged by
:mod:`thinnest.providers.whisper.text` (noise taken for words, a sentence said again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import uuid
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, APIError, llm, stt
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer, is_given

from thinnest.config import Settings
from thinnest.errors import ConfigError, ProviderError
from thinnest.log import logger
from thinnest.providers import models
from thinnest.providers._audio import to_mono_float32
from thinnest.providers._extras import require
from thinnest.providers.whisper.options import PROMPT_TOKENS, SAMPLE_RATE, WhisperOptions
from thinnest.providers.whisper.stream import WhisperStream
from thinnest.providers.whisper.text import (
    NO_SPEECH,
    Heard,
    not_speech,
    within,
    without_repeats,
    words_of,
)

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from livekit.agents.voice.events import ConversationItemAddedEvent

__all__ = ["BaseWhisperSTT", "WhisperSTT", "build"]

FULL_WINDOW = 3000  # mel frames in Whisper's 30 s encoder window
HOP = 160  # samples per mel frame (10 ms)
FIT_MARGIN = 100  # frames of silence after the speech in a ``fit`` window
TOKENS_PER_SECOND = 8  # far above any speaking rate: a decode that reaches it is looping
log = logger.getChild("providers.whisper")
_MODEL_DIRS = {"base": "whisper-base", "tiny.en": "whisper-tiny.en"}


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


class BaseWhisperSTT(stt.STT):
    """What every ``whisper`` STT shares, wherever its model runs: capabilities, a call's
    context (the agent's last words), the Silero VAD and :class:`WhisperStream`.

    Subclasses implement :meth:`transcribe`: in this process (:class:`WhisperSTT`), or as a
    client of the shared model service (:mod:`thinnest.providers.whisper.remote`).
    """

    def __init__(self, *, options: WhisperOptions) -> None:
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
        if options.streaming:
            # Loaded now (in a job process's prewarm), not at a call's first stream: creating
            # the ONNX session blocks the event loop for 0.1-0.2 s. Missing, stream() says so.
            with contextlib.suppress(ConfigError):
                self._vad = self._load_vad()

    def for_call(self) -> Self:
        """A view of this STT for one call: the same model and VAD, its own context.

        The engine shares one loaded STT among the calls of a process; what the agent said
        in one call must not steer the transcripts of another.
        """
        view = type(self).__new__(type(self))
        stt.STT.__init__(view, capabilities=self.capabilities)
        for name, value in vars(self).items():
            if name not in vars(view):  # the model, options, VAD: shared
                setattr(view, name, value)
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
        """Transcribe 16 kHz mono float32 samples synchronously (blocking).

        Args:
            audio: the samples.
            language: the spoken language, default the option's.
            final: decode with ``beam_size`` beams; False (an interim transcript): greedy.

        Returns:
            The text and the mean probability of its segments (0 when empty).

        Raises:
            APIError: the shared model service failed (the remote STT); any other
                exception is the model's own failure.
        """
        raise NotImplementedError

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
            except APIError:
                raise  # the service's error: livekit-agents retries it or gives up
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
        return WhisperStream(
            self, options=self._opts, vad=self._vad, language=lang, conn_options=conn_options
        )


class WhisperSTT(BaseWhisperSTT):
    """faster-whisper as a livekit-agents ``stt.STT`` (non-streaming)."""

    def __init__(self, *, options: WhisperOptions, settings: Settings) -> None:
        """Load (or reuse) the model; its files are verified first.

        Args:
            options: validated options.
            settings: where the models cache lives.

        Raises:
            ConfigError: the model's packages are missing or its cache is corrupt.
        """
        super().__init__(options=options)
        path = models.prepare(_MODEL_DIRS[options.resolved_model], settings=settings)
        self._model = _load(str(path), options.threads)

    def transcribe(
        self,
        audio: Any,
        language: str | None = None,
        *,
        final: bool = True,
        hint: str | None = None,
    ) -> tuple[str, float]:
        """Transcribe 16 kHz mono float32 samples synchronously.

        Args:
            audio: the samples.
            language: the spoken language, default the option's.
            final: decode with ``beam_size`` beams; False (an interim transcript): greedy.
            hint: the text said before (option prompt and a call's context); default this
                STT's own (the shared model service passes its client's).

        Returns:
            The text and the mean probability of its segments (0 when empty).
        """
        language = language or self._opts.language
        beams = self._opts.resolved_beam_size if final else 1
        hint = self._hint() if hint is None else hint
        context = list(_encode(self._model, hint)[-PROMPT_TOKENS:]) if hint else []
        heard = self._decode(audio, language, beams, context)
        if not_speech(heard):
            return "", 0.0
        if context and (
            heard.no_speech > NO_SPEECH or within(words_of(heard.text), words_of(hint))
        ):
            # A context makes Whisper surer of words it guesses into noise, and it copies its
            # prompt when the audio gives it nothing to read (a hum, a cough). Such a decode
            # is checked again without the context: no words, or noise, then means no speech;
            # otherwise the caller did speak ("Maddisyn." after "Jaxon or Maddisyn?"), and the
            # context's text (its spelling) stands.
            if not_speech(self._decode(audio, language, beams, [])):
                return "", 0.0
        return heard.text, heard.confidence

    def _decode(self, audio: Any, language: str, beams: int, context: list[int]) -> Heard:
        no_speech = 0.0
        if self._opts.window == "fit" and len(audio) // HOP + FIT_MARGIN < FULL_WINDOW:
            features = self._model.feature_extractor(audio)
            fitted = self._transcribe_window(features, language, beams, context)
            if isinstance(fitted, Heard):
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
        text = without_repeats("".join(texts).strip())
        return Heard(text, (sum(probs) / len(probs)) if probs else 0.0, no_speech)

    def _transcribe_window(
        self, features: Any, language: str, beams: int, context: list[int]
    ) -> Heard | float:
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
        text = without_repeats(said)
        # Out of budget without a repeat to cut, or text that compresses too well: looping.
        if (text == said and len(tokens) >= budget) or get_compression_ratio(text) > 2.4:
            log.debug("whisper: a looping decode in a short window (%r), decoding 30 s", text)
            return no_speech
        return Heard(text, min(1.0, math.exp(avg_logprob)) if text else 0.0, no_speech)


def build(options: WhisperOptions, settings: Settings) -> WhisperSTT:
    """Factory of the ``whisper`` STT."""
    return WhisperSTT(options=options, settings=settings)
