"""The shared speech service over real HTTP: SpeechService's router served by uvicorn on
loopback, and the providers built as its clients (``THINNEST_MODELS_URL``).

Whisper is ``tiny.en`` throughout (fast); its margins are those of the in-process tests.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from livekit.agents import APIConnectionError, APIConnectOptions, APIStatusError, stt

from tests.conftest import free_port
from tests.providers.conftest import Speech, espeak, make_settings, word_error_rate, words
from thinnest.config import Settings
from thinnest.contracts.agent import DEFAULT_PROVIDERS
from thinnest.modelsvc.speech import MAX_INPUT_CHARS, SpeechService
from thinnest.providers import registry
from thinnest.providers.remote_tts import RemoteTTS
from thinnest.providers.whisper.options import WhisperOptions
from thinnest.providers.whisper.remote import RemoteWhisperSTT
from thinnest.providers.whisper.stream import WhisperStream
from thinnest.providers.whisper.stt import WhisperSTT

TINY = {"model": "tiny.en"}


class _Server:
    """An app served by uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> _Server:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            assert self._thread.is_alive(), "uvicorn stopped"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


def _serve(service: SpeechService) -> _Server:
    app = FastAPI()
    app.include_router(service.router())
    return _Server(app)


@pytest.fixture(scope="module")
def service_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The service's settings: a private models cache."""
    return make_settings(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def service(service_settings: Settings) -> Iterator[SpeechService]:
    speech = SpeechService(service_settings)
    yield speech
    speech.close()


@pytest.fixture(scope="module")
def server(service: SpeechService) -> Iterator[_Server]:
    with _serve(service) as running:
        yield running


@pytest.fixture
def client_settings(server: _Server, tmp_path: Path) -> Settings:
    """A call's settings: the service's URL, an empty models cache of its own."""
    return make_settings(tmp_path, models_url=server.url, provider_timeout=20)


@pytest.fixture(scope="module")
def booking(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    return espeak(
        "Hello, I would like to book a table for two people tomorrow evening.",
        tmp_path_factory.mktemp("speech") / "booking.wav",
    )


def _at_16k(speech: Speech) -> np.ndarray:
    return np.concatenate([f.data for f in speech.frames(16000)]).astype(np.int16)


def _wav(pcm: np.ndarray, *, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())
    return out.getvalue()


# --- STT ---------------------------------------------------------------------------------


async def test_remote_whisper_transcribes_as_in_process(
    client_settings: Settings, service_settings: Settings, booking: Speech
) -> None:
    remote = registry.build("stt", "whisper", TINY, settings=client_settings)
    assert isinstance(remote, RemoteWhisperSTT)
    assert not hasattr(remote, "_model")  # the call's process holds no Whisper
    event = await remote.recognize(booking.frames())
    text = event.alternatives[0].text
    assert word_error_rate(booking.text, text) <= 0.2, text  # the in-process test's margin

    # The same decode as the call's own Whisper: the same text, with or without a context.
    local = registry.build(
        "stt", "whisper", {**TINY, "streaming": False}, settings=service_settings
    )
    assert isinstance(local, WhisperSTT)
    audio = _at_16k(booking).astype(np.float32) / 32768.0
    for context in ("", "Welcome to Bistro Verde. How can I help you?"):
        call_remote, call_local = remote.for_call(), local.for_call()
        call_remote.set_context(context)
        call_local.set_context(context)
        for final in (True, False):
            started = time.perf_counter()
            here = call_local.transcribe(audio, "en", final=final)
            local_s = time.perf_counter() - started
            started = time.perf_counter()
            there = await asyncio.to_thread(call_remote.transcribe, audio, "en", final=final)
            remote_s = time.perf_counter() - started
            assert there[0] == here[0], (context, final)
            assert there[1] == pytest.approx(here[1], abs=1e-6)
            print(
                f"final={final} context={bool(context)}: in-process {local_s * 1000:.0f} ms, "
                f"service {remote_s * 1000:.0f} ms"
            )


async def test_remote_whisper_context_is_per_call(client_settings: Settings) -> None:
    remote = registry.build("stt", "whisper", TINY, settings=client_settings)
    one, two = remote.for_call(), remote.for_call()
    one.set_context("Jaxon or Maddisyn?")
    assert one._hint() == "Jaxon or Maddisyn?"
    assert two._hint() == ""
    assert type(one) is RemoteWhisperSTT and one._url == remote._url


async def test_remote_whisper_streams_interim_and_final_transcripts(
    client_settings: Settings, booking: Speech
) -> None:
    remote = registry.build(
        "stt", "whisper", {**TINY, "interim_results": True}, settings=client_settings
    )
    assert remote.capabilities.streaming and remote.capabilities.interim_results
    stream = remote.stream()
    silence = np.zeros(16000, dtype=np.int16)
    pcm = np.concatenate([silence, _at_16k(booking), silence])

    async def feed() -> None:
        for frame in Speech("", pcm, 16000).frames():
            stream.push_frame(frame)
            await asyncio.sleep(0.02)  # as a caller speaks
        stream.end_input()

    feeder = asyncio.create_task(feed())
    events = [event async for event in stream]
    await feeder
    await stream.aclose()
    kinds = [e.type for e in events if e.type != stt.SpeechEventType.RECOGNITION_USAGE]
    assert stt.SpeechEventType.INTERIM_TRANSCRIPT in kinds
    assert kinds.index(stt.SpeechEventType.INTERIM_TRANSCRIPT) < kinds.index(
        stt.SpeechEventType.END_OF_SPEECH
    )
    assert kinds[-1] == stt.SpeechEventType.FINAL_TRANSCRIPT
    interim = next(e for e in events if e.type == stt.SpeechEventType.INTERIM_TRANSCRIPT)
    assert words(interim.alternatives[0].text)[:1] == ["hello"]
    final = events[-1].alternatives[0].text
    assert word_error_rate(booking.text, final) <= 0.2, final


# --- TTS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options", "rate"),
    [
        ("hibari", {}, 24000),
        ("hibari", {"sample_rate": 48000}, 48000),
        ("piper", {}, 22050),
        ("espeak", {}, 22050),
    ],
)
async def test_remote_tts_streams_speech_whisper_understands(
    client_settings: Settings, name: str, options: dict[str, int], rate: int
) -> None:
    voice = registry.build("tts", name, options, settings=client_settings)
    assert isinstance(voice, RemoteTTS)
    assert voice.sample_rate == rate
    text = (
        "Sure. Your table for two is booked for seven o'clock tomorrow evening. "
        "We will keep it for fifteen minutes, and if you are late, please call us."
    )
    async with voice.synthesize("Hello.") as warm_up:  # the service loads the voice
        assert [audio async for audio in warm_up]
    started = time.perf_counter()
    chunks: list[bytes] = []
    arrivals: list[float] = []
    async with voice.synthesize(text) as stream:
        async for audio in stream:
            assert audio.frame.sample_rate == voice.sample_rate
            chunks.append(bytes(audio.frame.data))
            arrivals.append(time.perf_counter() - started)
    pcm = np.frombuffer(b"".join(chunks), dtype=np.int16)
    duration = pcm.size / voice.sample_rate
    assert 5.0 < duration < 20.0, duration
    assert np.abs(pcm).max() > 1000  # not silence
    if name != "espeak":  # espeak-ng speaks the whole text in a few ms: nothing to stream
        # streamed: "Sure." was heard long before the rest was synthesised
        assert arrivals[0] < 0.5 * arrivals[-1], arrivals
    print(f"{name}: first audio {arrivals[0] * 1000:.0f} ms, all {arrivals[-1] * 1000:.0f} ms")

    whisper = registry.build(
        "stt", "whisper", {**TINY, "streaming": False}, settings=client_settings
    )
    event = await whisper.recognize(Speech(text, pcm, voice.sample_rate).frames())
    heard = event.alternatives[0].text
    assert word_error_rate(text, heard) <= 0.25, heard  # the in-process TTS test's margin


# --- bad input ---------------------------------------------------------------------------


def _form(**fields: str) -> dict[str, str]:
    return {"model": "whisper", "language": "en", "options": json.dumps(TINY), **fields}


@pytest.mark.parametrize(
    ("data", "file", "field"),
    [
        (_form(model="whisper-2"), _wav(np.zeros(1600, np.int16)), "model"),
        ({"language": "en"}, _wav(np.zeros(1600, np.int16)), "model"),
        (_form(), _wav(np.zeros(3200, np.int16), channels=2), "file"),
        (_form(), _wav(np.zeros(1600, np.int16), rate=8000), "file"),
        (_form(), _wav(np.zeros(1600, np.uint8), width=1), "file"),
        (_form(), b"RIFF not a wav at all", "file"),
        (_form(), None, "file"),
        (_form(options='{"beam_size": 9}'), _wav(np.zeros(1600, np.int16)), "options.beam_size"),
        (_form(options='{"streaming": true}'), _wav(np.zeros(1600, np.int16)), "options.streaming"),
        (_form(options="{nope"), _wav(np.zeros(1600, np.int16)), "options"),
        (_form(language="de"), _wav(np.zeros(1600, np.int16)), "language"),
        (_form(language="EN!"), _wav(np.zeros(1600, np.int16)), "language"),
        (_form(final="maybe"), _wav(np.zeros(1600, np.int16)), "final"),
    ],
)
def test_transcription_refuses_bad_input(
    server: _Server, data: dict[str, str], file: bytes | None, field: str
) -> None:
    # multipart either way: no file is a form without that part
    files = {"file" if file is not None else "note": ("a.wav", file or b"", "audio/wav")}
    answer = httpx.post(f"{server.url}/v1/audio/transcriptions", data=data, files=files)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == field, error
    assert error["message"] and error["code"]


def test_transcription_refuses_a_body_that_is_no_form(server: _Server) -> None:
    answer = httpx.post(f"{server.url}/v1/audio/transcriptions", json={"model": "whisper"})
    assert answer.status_code == 422
    assert "multipart" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "elevenlabs", "input": "Hi."}, "model"),
        ({"model": "nope", "input": "Hi."}, "model"),
        ({"input": "Hi."}, "model"),
        ({"model": "espeak"}, "input"),
        ({"model": "espeak", "input": "   "}, "input"),
        ({"model": "espeak", "input": 5}, "input"),
        ({"model": "espeak", "input": "a" * (MAX_INPUT_CHARS + 1)}, "input"),
        ({"model": "espeak", "input": "Hi.", "options": {"pitch": 500}}, "options.pitch"),
        ({"model": "espeak", "input": "Hi.", "options": {"volume": 1}}, "options.volume"),
        ({"model": "espeak", "input": "Hi.", "response_format": "mp3"}, "response_format"),
    ],
)
def test_speech_refuses_bad_input(server: _Server, body: dict[str, object], field: str) -> None:
    answer = httpx.post(f"{server.url}/v1/audio/speech", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field, answer.json()


def test_speech_refuses_a_body_that_is_no_json(server: _Server) -> None:
    answer = httpx.post(f"{server.url}/v1/audio/speech", content=b"{model: espeak")
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"


def test_service_preloads_the_default_agents_models(service: SpeechService) -> None:
    service.preload()
    assert service.health() == {"stt": "ok", "tts": "ok"}
    default = WhisperOptions()
    assert any(lane.stts for name, lane in service._lanes.items() if name == default.resolved_model)
    assert any(name == DEFAULT_PROVIDERS["tts"] for name, _ in service._voices)


def test_a_closed_service_is_down_and_refuses_work(service_settings: Settings) -> None:
    closed = SpeechService(service_settings)
    closed.close()
    assert closed.health() == {"stt": "down", "tts": "down"}
    with _serve(closed) as running:
        answer = httpx.post(
            f"{running.url}/v1/audio/speech", json={"model": "espeak", "input": "Hi."}
        )
    assert answer.status_code == 503
    assert answer.json()["error"]["message"]


# --- overload and a service that is down ----------------------------------------------------


def test_a_full_decode_queue_answers_503(service_settings: Settings, booking: Speech) -> None:
    busy = SpeechService(service_settings, queue_limit=1)
    try:
        with _serve(busy) as running:
            audio = _wav(_at_16k(booking))

            def post() -> httpx.Response:
                files = {"file": ("a.wav", audio, "audio/wav")}
                return httpx.post(
                    f"{running.url}/v1/audio/transcriptions", data=_form(), files=files, timeout=60
                )

            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda _: post(), range(6)))
    finally:
        busy.close()
    codes = sorted(a.status_code for a in answers)
    assert codes[0] == 200 and codes[-1] == 503, codes
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded"


#: A reply long enough that its synthesis is still running when the next ones arrive.
_LONG_REPLY = "Your table for two is booked for tomorrow evening at eight o'clock. " * 6


def _speak(url: str) -> httpx.Response:
    body = {"model": "hibari", "input": _LONG_REPLY}
    return httpx.post(f"{url}/v1/audio/speech", json=body, timeout=60)


def test_syntheses_beyond_the_waiting_room_are_answered_503(service_settings: Settings) -> None:
    """One synthesis runs, one waits, the rest are refused with a JSON error: the voices
    never take more of the machine than their share, whatever the calls ask at once."""
    busy = SpeechService(service_settings, queue_limit=1, voices_at_once=1)
    try:
        with _serve(busy) as running:
            assert _speak(running.url).status_code == 200  # the voice loaded
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda _: _speak(running.url), range(6)))
    finally:
        busy.close()
    codes = sorted(a.status_code for a in answers)
    assert codes.count(200) >= 2 and codes[-1] == 503, codes
    assert all(len(a.content) > 24000 for a in answers if a.status_code == 200)  # > 0.5 s
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded"


def test_a_caller_that_hangs_up_gives_its_synthesis_place_back(
    service_settings: Settings,
) -> None:
    """Callers that hang up before reading, or after the first audio, do not keep the
    only place: the next synthesis still runs."""
    voice = SpeechService(service_settings, voices_at_once=1)
    try:
        with _serve(voice) as running:
            url = f"{running.url}/v1/audio/speech"
            for read in (False, True, False, True):
                with httpx.stream(
                    "POST", url, json={"model": "hibari", "input": _LONG_REPLY}, timeout=60
                ) as answer:
                    assert answer.status_code == 200
                    if read:
                        next(answer.iter_bytes())
            answer = _speak(running.url)  # hangs (60 s, then fails) if a place was kept
    finally:
        voice.close()
    assert answer.status_code == 200 and len(answer.content) > 24000


def test_final_decodes_go_before_interim_ones(server: _Server, booking: Speech) -> None:
    long = _wav(np.tile(_at_16k(booking), 6))  # keeps the model busy meanwhile
    short = _wav(_at_16k(booking))
    done: dict[str, float] = {}

    def post(name: str, audio: bytes, final: str) -> None:
        files = {"file": ("a.wav", audio, "audio/wav")}
        answer = httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            data=_form(final=final),
            files=files,
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        done[name] = time.monotonic()

    with ThreadPoolExecutor(3) as pool:
        busy = pool.submit(post, "busy", long, "true")
        time.sleep(0.1)
        interim = pool.submit(post, "interim", short, "false")
        time.sleep(0.1)  # the interim one waits in the queue when the final one comes
        final = pool.submit(post, "final", short, "true")
        for job in (busy, interim, final):
            job.result()
    assert done["busy"] < done["final"] < done["interim"], done


def test_a_backlogged_model_skips_interim_decodes(server: _Server, booking: Speech) -> None:
    long = _wav(np.tile(_at_16k(booking), 6))
    short = _wav(_at_16k(booking))

    def post(audio: bytes, final: str) -> httpx.Response:
        files = {"file": ("a.wav", audio, "audio/wav")}
        return httpx.post(
            f"{server.url}/v1/audio/transcriptions",
            data=_form(final=final),
            files=files,
            timeout=60,
        )

    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(post, long, "true")
        time.sleep(0.1)
        waiting = pool.submit(post, short, "true")
        time.sleep(0.1)  # one decode runs, one waits: an interim one would come late
        skipped = post(short, "false")
        assert busy.result().status_code == waiting.result().status_code == 200
    assert skipped.status_code == 503, skipped.text
    assert skipped.json()["error"]["code"] == "busy"
    assert post(short, "false").status_code == 200  # idle again


async def test_remote_stream_decodes_again_when_its_preflight_was_refused(
    service: SpeechService, client_settings: Settings, tmp_path: Path
) -> None:
    said = espeak("I would like a table for two people tomorrow evening", tmp_path / "t.wav")
    speech = _at_16k(said)
    loud = np.flatnonzero(np.abs(speech) > 300)
    speech = speech[loud[0] : loud[-1] + 1]  # without espeak-ng's silence after the words
    silence = np.zeros(16000, dtype=np.int16)
    remote = registry.build(
        "stt", "whisper", {**TINY, "interim_results": False}, settings=client_settings
    )
    stream = remote.stream()
    assert isinstance(stream, WhisperStream)
    lane = service._lane("tiny.en")
    full = lane.pending
    lane.pending = 10**6  # as if the model were flooded: a decode is refused (503)
    try:
        for frame in Speech("", np.concatenate([silence, speech]), 16000).frames():
            stream.push_frame(frame)
        await asyncio.sleep(1.5)  # the VAD has judged every frame of the speech
        # A pause, frame by frame, until it asks for a preflight (0.15 s of silence): the
        # end of the utterance (0.4 s) is not reached yet.
        pause = iter(Speech("", silence, 16000).frames())
        deadline = time.monotonic() + 20
        preflight = None
        while preflight is None or not preflight.done():
            assert time.monotonic() < deadline, "no preflight was asked for"
            utterance = stream._utterance
            preflight = utterance.preflight if utterance is not None else None
            if preflight is None:
                stream.push_frame(next(pause))
            await asyncio.sleep(0.05)
        assert isinstance(preflight.exception(), APIStatusError)
    finally:
        lane.pending = full
    for frame in Speech("", silence, 16000).frames():  # the end of the utterance
        stream.push_frame(frame)
    stream.end_input()
    events = [event async for event in stream]
    await stream.aclose()
    finals = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert len(finals) == 1, [e.type for e in events]
    assert word_error_rate(said.text, finals[0].alternatives[0].text) <= 0.2


async def test_a_service_that_is_down_fails_fast(tmp_path: Path, booking: Speech) -> None:
    down = make_settings(
        tmp_path, models_url=f"http://127.0.0.1:{free_port()}", provider_timeout=30
    )
    whisper = registry.build("stt", "whisper", TINY, settings=down)
    no_retry = APIConnectOptions(max_retry=0)
    started = time.monotonic()
    with pytest.raises(APIConnectionError):
        await whisper.recognize(booking.frames(), conn_options=no_retry)
    voice = registry.build("tts", "espeak", {}, settings=down)
    with pytest.raises(APIConnectionError):
        async with voice.synthesize("Hello.", conn_options=no_retry) as stream:
            async for _ in stream:
                pass
    assert time.monotonic() - started < 5.0  # far below provider_timeout
