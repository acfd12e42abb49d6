"""The shared STT and TTS of the model service: Whisper and the offline voices, loaded once.

Every call on the machine (or on the worker hosts that name this service in
``THINNEST_MODELS_URL``) sends its decodes and sentences here instead of loading the models
itself (:mod:`thinnest.providers.whisper.remote`, :mod:`thinnest.providers.remote_tts`).

- ``POST /v1/audio/transcriptions``: a WAV and the client's hint, decoded by the very
  :meth:`WhisperSTT.transcribe` a call's own Whisper runs (fit window, repeats cut, noise
  judged, the context checked). Decodes of one model run one at a time in a thread of
  their own: CTranslate2 already spreads one decode over the machine's cores, so two at
  once finish together no sooner (measured on 2 cores, 4 s of speech: two tiny.en decodes
  at once 718 ms, one after the other 773 ms, the first of them done after ~390 ms). Final
  decodes go first, then interim ones, each in the order they came; an interim decode is
  refused (503 ``busy``: the client shows no partial transcript) when the model is
  backlogged, and any request beyond ``queue_limit`` (503 ``overloaded``: the client's
  livekit-agents retries it).
- ``POST /v1/audio/speech``: text to raw 16-bit mono PCM, streamed as the voice produces it.
  As many syntheses run at once as the machine has cores (each one's thread would only
  slow the others and the LLM beside them); the rest wait their turn, and one beyond
  ``queue_limit`` waiting is answered 503 ``overloaded`` (the client's livekit-agents
  retries it).

Bad input is answered 422 with ``{"error": {"code", "message", "field"}}`` naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import heapq
import io
import itertools
import json
import os
import threading
import wave
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from livekit.agents import APIConnectOptions, tts

from thinnest.config import Settings
from thinnest.contracts.agent import DEFAULT_PROVIDERS
from thinnest.errors import ConfigError, field_of
from thinnest.log import logger
from thinnest.providers import registry
from thinnest.providers.whisper.options import SAMPLE_RATE, WhisperOptions

__all__ = ["LOCAL_TTS", "MAX_AUDIO_SECONDS", "MAX_INPUT_CHARS", "SpeechService"]

log = logger.getChild("models.speech")

#: The offline voices the service may load (a cloud TTS is never served from here).
LOCAL_TTS = ("hibari", "piper", "espeak")
MAX_INPUT_CHARS = 5000  # text of one speech request (an answer is a few sentences)
MAX_AUDIO_SECONDS = 120.0  # audio of one transcription (an utterance is seconds long)
MAX_PROMPT_CHARS = 4000
_MAX_BODY = int(MAX_AUDIO_SECONDS * SAMPLE_RATE * 2) + 64 * 1024
_MAX_JSON = 64 * 1024
# The options of a decode a client may set; the rest concern the call, not the decode.
_DECODE_OPTIONS = frozenset({"model", "beam_size", "window", "language", "threads"})
_NO_RETRY = APIConnectOptions(max_retry=0)  # the client's session retries, not the service


class _BadRequest(Exception):
    """A request the service refuses: its status, code, message and field."""

    def __init__(self, message: str, *, field: str | None, status: int = 422, code: str = ""):
        super().__init__(message)
        self.message, self.field, self.status = message, field, status
        self.code = code or ("invalid_request" if status == 422 else "error")

    def response(self) -> JSONResponse:
        return _error(self.status, self.code, self.message, self.field)


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "field": field}}, status_code=status
    )


@dataclass
class _Lane:
    """One Whisper model: its decodes' thread, one decode at a time, and their count.

    Final decodes (a final transcript, or a preflight that may be one) go before interim
    ones, each kind in the order it came: a call's answer waits on its final transcript,
    while an interim one only shows what is being said.
    """

    executor: ThreadPoolExecutor
    pending: int = 0  # decodes running and waiting
    refused: int = 0  # requests answered 503 (busy or full) so far
    stts: dict[str, Any] = field(default_factory=dict)  # by decode options: WhisperSTT
    _waiting: list[tuple[int, int, Callable[[], Any], Future[Any]]] = field(default_factory=list)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, job: Callable[[], Any], *, final: bool) -> Future[Any]:
        """Run ``job`` in the lane's thread, finals first.

        Raises:
            RuntimeError: the lane was shut down.
        """
        future: Future[Any] = Future()
        with self._lock:
            heapq.heappush(self._waiting, (0 if final else 1, next(self._order), job, future))
        self.executor.submit(self._run_next)
        return future

    def _run_next(self) -> None:
        with self._lock:
            _, _, job, future = heapq.heappop(self._waiting)
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the request that waits on it
                future.set_exception(exc)

    def shut_down(self) -> None:
        """Cancel the decodes not started; the running one finishes."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for *_, future in self._waiting:
                future.cancel()
            self._waiting.clear()


class SpeechService:
    """Whisper and the offline voices of one machine, loaded once and shared by its calls."""

    def __init__(
        self, settings: Settings, *, queue_limit: int = 16, voices_at_once: int = 0
    ) -> None:
        """Load nothing yet (:meth:`preload` loads the default agent's models).

        Args:
            settings: the service's settings; its models are built locally whatever
                ``models_url`` says, with ``models_threads`` threads each (default: all
                cores).
            queue_limit: decodes one Whisper model may hold (running and waiting); one
                more is answered 503. Also the syntheses that may wait for a voice.
            voices_at_once: syntheses running at once; 0: one per core.
        """
        self._settings = settings.model_copy(update={"models_url": None})
        self._threads = settings.models_threads or 0
        self._queue_limit = queue_limit
        self._lanes: dict[str, _Lane] = {}
        self._voices: dict[tuple[str, str], tts.TTS] = {}
        self._lock = threading.Lock()
        self._voices_lock = threading.Lock()  # held while a voice loads (seconds)
        self._closed = False
        self._failed: dict[str, str] = {}  # kind -> why its last load failed
        # Syntheses running at once (one per core), and how many wait for one to end.
        self._voicing = asyncio.Semaphore(voices_at_once or len(os.sched_getaffinity(0)))
        self._voicing_waits = 0

    # --- loading -----------------------------------------------------------------------

    def _decode_options(self, options: WhisperOptions) -> WhisperOptions:
        """``options`` as the service decodes them: its threads, no VAD, no own hint."""
        return options.model_copy(
            update={"threads": self._threads, "streaming": False, "prompt": "", "context": False}
        )

    def _lane(self, model: str) -> _Lane:
        with self._lock:
            lane = self._lanes.get(model)
            if lane is None:
                executor = ThreadPoolExecutor(1, thread_name_prefix=f"whisper-{model}")
                lane = self._lanes[model] = _Lane(executor)
            return lane

    def _whisper(self, options: WhisperOptions) -> Any:
        """The loaded Whisper of ``options`` (blocking; run in the model's own thread)."""
        opts = self._decode_options(options)
        lane = self._lane(opts.resolved_model)
        key = opts.model_dump_json()
        stt = lane.stts.get(key)
        if stt is None:
            stt = lane.stts[key] = registry.build("stt", "whisper", opts, settings=self._settings)
        return stt

    def _voice(self, name: str, options: Any) -> tts.TTS:
        """The loaded voice ``name`` with validated ``options`` (blocking)."""
        key = (name, options.model_dump_json())
        with self._voices_lock:
            voice = self._voices.get(key)
            if voice is None:
                voice = registry.build("tts", name, options, settings=self._settings)
                self._voices[key] = voice
            return voice

    def preload(self) -> None:
        """Load the default agent's models: Whisper with default options and the default
        TTS (blocking; seconds).

        Raises:
            ConfigError: a model is not installed or its files are corrupt.
        """
        options = WhisperOptions()
        try:
            self._lane(options.resolved_model).executor.submit(self._whisper, options).result()
        except ConfigError as exc:
            self._failed["stt"] = exc.message
            raise
        self._failed.pop("stt", None)
        name = DEFAULT_PROVIDERS["tts"]
        try:
            self._voice(name, registry.validate("tts", name, {}, settings=self._settings))
        except ConfigError as exc:
            self._failed["tts"] = exc.message
            raise
        self._failed.pop("tts", None)

    def health(self) -> dict[str, str]:
        """``{"stt": "ok"|"down", "tts": "ok"|"down"}``: down when closed, or when
        :meth:`preload` could not load the default model (a voice that only some agents name
        and that is not installed here fails their requests, not the service)."""
        return {
            kind: "down" if self._closed or kind in self._failed else "ok"
            for kind in ("stt", "tts")
        }

    def close(self) -> None:
        """Stop taking decodes and drop the models (queued decodes are cancelled)."""
        self._closed = True
        with self._lock:
            for lane in self._lanes.values():
                lane.shut_down()
            self._lanes.clear()
        with self._voices_lock:
            self._voices.clear()

    # --- HTTP --------------------------------------------------------------------------

    def router(self) -> APIRouter:
        """``POST /v1/audio/transcriptions`` and ``POST /v1/audio/speech``."""
        router = APIRouter()

        @router.post("/v1/audio/transcriptions")
        async def transcriptions(request: Request) -> Response:
            """Whisper's text of a 16 kHz 16-bit mono WAV (OpenAI's form, plus ``prompt``,
            ``options`` and ``final``)."""
            try:
                return await self._transcription(request)
            except _BadRequest as exc:
                return exc.response()

        @router.post("/v1/audio/speech")
        async def speech(request: Request) -> Response:
            """Text to raw 16-bit mono PCM (``X-Sample-Rate``), streamed as it is spoken."""
            try:
                return await self._speech(request)
            except _BadRequest as exc:
                return exc.response()

        return router

    async def _transcription(self, request: Request) -> Response:
        if self._closed:
            raise _BadRequest("the speech service is closing", field=None, status=503)
        form = await _form(request)
        if form.get("model", b"").decode(errors="replace") != "whisper":
            raise _BadRequest("model must be 'whisper'", field="model")
        raw_options = _json_field(form, "options", default={})
        if not isinstance(raw_options, dict):
            raise _BadRequest("options must be a JSON object", field="options")
        unknown = sorted(set(raw_options) - _DECODE_OPTIONS)
        if unknown:
            raise _BadRequest(
                f"unknown decode option {unknown[0]!r}; "
                f"allowed: {', '.join(sorted(_DECODE_OPTIONS))}",
                field=f"options.{unknown[0]}",
            )
        language = form["language"].decode(errors="replace") if "language" in form else None
        if language is not None:
            raw_options = {**raw_options, "language": language}
        try:
            options = WhisperOptions.model_validate(raw_options)
        except pydantic.ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = field_of(err["loc"], default="")
            # the form's language, or one the options' model cannot hear ("de" for tiny.en)
            name = "language" if where in ("language", "") and language is not None else None
            raise _BadRequest(
                f"invalid option {where or 'options'!r}: {err['msg']}",
                field=name or field_of(err["loc"], prefix="options"),
            ) from exc
        prompt = _text_field(form, "prompt", limit=MAX_PROMPT_CHARS)
        final_text = form.get("final", b"true").decode(errors="replace").lower()
        if final_text not in ("true", "false"):
            raise _BadRequest("final must be 'true' or 'false'", field="final")
        if "file" not in form:
            raise _BadRequest("file (a 16 kHz 16-bit mono WAV) is missing", field="file")
        audio = _read_wav(form["file"])
        if not audio.size:
            return JSONResponse(
                {"text": "", "confidence": 0.0, "language": options.language, "duration": 0.0}
            )

        final = final_text == "true"
        lane = self._lane(options.resolved_model)
        if not final and lane.pending >= 2:
            lane.refused += 1
            # Backlogged: an interim transcript would come late and delay finals after it.
            raise _BadRequest(
                f"whisper {options.resolved_model} is busy: interim decodes are skipped",
                field=None,
                status=503,
                code="busy",
            )
        if lane.pending >= self._queue_limit:
            lane.refused += 1
            raise _BadRequest(
                f"whisper {options.resolved_model} has {lane.pending} decodes queued; "
                "try again shortly",
                field=None,
                status=503,
                code="overloaded",
            )
        lane.pending += 1
        try:

            def decode() -> tuple[str, float]:
                stt = self._whisper(options)
                text, confidence = stt.transcribe(audio, options.language, final=final, hint=prompt)
                return str(text), float(confidence)

            job = lane.submit(decode, final=final)
            text, confidence = await asyncio.wrap_future(job)
        except ConfigError as exc:
            return _error(503, exc.code, exc.message)
        except RuntimeError as exc:  # the lane was shut down: the service is closing
            return _error(503, "unavailable", f"the speech service is closing: {exc}")
        except asyncio.CancelledError:
            if not self._closed:
                raise  # the request itself was cancelled (its client went away)
            return _error(503, "unavailable", "the speech service is closing")
        except Exception as exc:
            log.exception("whisper failed")
            return _error(500, "stt_failed", f"whisper failed: {exc}")
        finally:
            lane.pending -= 1
        return JSONResponse(
            {
                "text": text,
                "confidence": confidence,
                "language": options.language,
                "duration": audio.size / SAMPLE_RATE,
            }
        )

    async def _speech(self, request: Request) -> Response:
        if self._closed:
            raise _BadRequest("the speech service is closing", field=None, status=503)
        body = await _body(request, _MAX_JSON)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _BadRequest(f"the body is not JSON: {exc}", field=None) from exc
        if not isinstance(data, dict):
            raise _BadRequest("the body must be a JSON object", field=None)
        name = data.get("model")
        known = [n for n in LOCAL_TTS if n in registry.names("tts")]
        if not isinstance(name, str) or name not in known:
            raise _BadRequest(
                f"unknown voice model {name!r}; this service speaks: {', '.join(known)}",
                field="model",
            )
        text = data.get("input")
        if not isinstance(text, str) or not text.strip():
            raise _BadRequest("input must be a non-empty string", field="input")
        if len(text) > MAX_INPUT_CHARS:
            raise _BadRequest(
                f"input is {len(text)} characters; at most {MAX_INPUT_CHARS}", field="input"
            )
        if data.get("response_format", "pcm") != "pcm":
            raise _BadRequest("response_format must be 'pcm'", field="response_format")
        raw_options = data.get("options") or {}
        unknown_keys = set(data) - {"model", "input", "options", "response_format", "voice"}
        if unknown_keys:
            key = sorted(unknown_keys)[0]
            raise _BadRequest(f"unknown field {key!r}", field=key)
        try:
            options = registry.validate("tts", name, raw_options, settings=self._settings)
        except ConfigError as exc:
            where = (exc.field or "").removeprefix("providers.tts.")
            raise _BadRequest(exc.message, field=where or "options") from exc
        try:
            voice = await asyncio.to_thread(self._voice, name, options)
        except ConfigError as exc:
            return _error(503, exc.code, f"voice {name!r} cannot be loaded here: {exc.message}")

        if self._voicing.locked() and self._voicing_waits >= self._queue_limit:
            raise _BadRequest(
                f"{self._voicing_waits} syntheses are waiting; try again shortly",
                field=None,
                status=503,
                code="overloaded",
            )
        self._voicing_waits += 1
        try:
            await self._voicing.acquire()
        finally:
            self._voicing_waits -= 1
        permit = _Permit(self._voicing)
        stream = voice.synthesize(text, conn_options=_NO_RETRY)
        chunks = aiter(stream)
        try:
            # The first audio before the answer starts: a voice that fails at once is a
            # clean 502, not a broken body.
            first: bytes | None = bytes((await anext(chunks)).frame.data)
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            await stream.aclose()
            permit.release()
            log.warning("voice %s failed: %r", name, exc)
            return _error(502, "tts_failed", f"voice {name!r} failed: {exc}")

        async def pcm() -> AsyncIterator[bytes]:
            try:
                if first is None:
                    return
                yield first
                async for audio in chunks:
                    yield bytes(audio.frame.data)
            finally:
                # A failure mid-answer ends the body unfinished: the client sees a broken
                # response (an error), never a short one taken for the whole.
                await stream.aclose()
                permit.release()

        audio = pcm()
        # A caller that hangs up before the body starts leaves it unstarted (its finally
        # never runs): the permit goes back when the body is dropped.
        weakref.finalize(audio, permit.release)
        return StreamingResponse(
            audio,
            media_type="audio/pcm",
            headers={"X-Sample-Rate": str(voice.sample_rate)},
        )


class _Permit:
    """One running synthesis's place, given back once however its answer ends."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BadRequest(f"the body is {declared} bytes; at most {limit}", field=None, status=413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BadRequest(f"the body is over {limit} bytes", field=None, status=413)
    return bytes(body)


async def _form(request: Request) -> dict[str, bytes]:
    """A ``multipart/form-data`` body's fields (the first of each name), by name."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise _BadRequest(
            "the body must be multipart/form-data (fields file, model, ...)", field=None
        )
    body = await _body(request, _MAX_BODY)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise _BadRequest("the multipart body cannot be read", field=None)
    form: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name not in form:
            payload = part.get_payload(decode=True)
            form[name] = payload if isinstance(payload, bytes) else b""
    return form


def _text_field(form: dict[str, bytes], name: str, *, limit: int) -> str:
    try:
        text = form.get(name, b"").decode()
    except UnicodeDecodeError as exc:
        raise _BadRequest(f"{name} is not UTF-8 text", field=name) from exc
    if len(text) > limit:
        raise _BadRequest(f"{name} is {len(text)} characters; at most {limit}", field=name)
    return text


def _json_field(form: dict[str, bytes], name: str, *, default: Any) -> Any:
    if name not in form or not form[name].strip():
        return default
    try:
        return json.loads(form[name])
    except ValueError as exc:
        raise _BadRequest(f"{name} is not JSON: {exc}", field=name) from exc


def _read_wav(data: bytes) -> np.ndarray:
    """A 16 kHz 16-bit mono WAV's samples as float32 in [-1, 1]."""
    try:
        with contextlib.closing(wave.open(io.BytesIO(data))) as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise _BadRequest(f"file is not a WAV file: {exc}", field="file") from exc
    if channels != 1 or width != 2 or rate != SAMPLE_RATE:
        raise _BadRequest(
            f"file must be 16-bit mono PCM at {SAMPLE_RATE} Hz "
            f"(it is {8 * width}-bit, {channels} channels, {rate} Hz)",
            field="file",
        )
    pcm = np.frombuffer(frames[: len(frames) - len(frames) % 2], dtype="<i2")
    if pcm.size / SAMPLE_RATE > MAX_AUDIO_SECONDS:
        raise _BadRequest(
            f"file holds {pcm.size / SAMPLE_RATE:.0f} s of audio; at most {MAX_AUDIO_SECONDS:.0f}",
            field="file",
        )
    return pcm.astype(np.float32) / 32768.0
