"""The ``google`` STT against a local gRPC server speaking Cloud Speech v1 and v2.

The plugin's real code path runs through our factory: the google-cloud-speech gRPC client,
the API key as ``x-goog-api-key`` call metadata, ``StreamingRecognize`` (config first, then
LINEAR16 audio; speech events, interim and final results, billed duration back) and
``Recognize`` with its deadline. Refusals (UNAUTHENTICATED, PERMISSION_DENIED) are final
errors, UNAVAILABLE is retried, a server that never answers ``Recognize`` is a timeout, and
so is a stream unanswered while loud audio goes in (not one unanswered during silence).
Messages are (de)serialised with the proto-plus classes of ``google.cloud.speech_v1/v2``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import grpc
import numpy as np
import pytest
from google.cloud.speech_v1.types import cloud_speech as v1
from google.cloud.speech_v2.types import cloud_speech as v2
from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    APITimeoutError,
    stt,
)
from livekit.plugins import google as google_plugin
from livekit.plugins.google.models import SpeechModelsV2

from livekit import rtc
from thinnest.errors import ConfigError
from thinnest.providers import google as google_provider
from thinnest.providers import registry

from .conftest import make_settings

pytestmark = pytest.mark.integration

_KEY = "g-test"
_FINAL = "Hello, book a table."


@dataclass
class FakeSpeech:
    """The fake Speech service: how it answers, and what it was sent.

    Attributes:
        endpoint: ``host:port`` it listens on.
        key: the API key it accepts; any other is UNAUTHENTICATED.
        failures: status codes that the next calls are aborted with, in order.
        hang: never answer (to prove the client's deadline).
        mute: read a stream's audio to its end but never answer it.
        refuse_at_once: refuse a streaming call without reading its audio first, as a real
            server refuses a live stream (the client is still writing when the status comes).
        chatty: answer an interim result to every 0.5 s of a stream's audio (as Google does
            while someone speaks), not only to the first.
        calls: the gRPC methods called (``v1/StreamingRecognize``, ...).
        keys: the ``x-goog-api-key`` of each call.
        deadlines: seconds left before each call's deadline when it arrived (None: none).
        configs: the recognition (or streaming recognition) config of each call.
        recognizers: the recognizer of each v2 call.
        audio_bytes: audio received, all calls together.
    """

    endpoint: str = ""
    key: str = _KEY
    failures: list[grpc.StatusCode] = field(default_factory=list)
    hang: bool = False
    mute: bool = False
    refuse_at_once: bool = False
    chatty: bool = False
    calls: list[str] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    configs: list[Any] = field(default_factory=list)
    recognizers: list[str] = field(default_factory=list)
    audio_bytes: int = 0

    async def admit(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        requests: AsyncIterator[Any] | None = None,
    ) -> None:
        """Record the call, then refuse, stall or let it through as configured.

        A refused streaming call is first read to its end, unless ``refuse_at_once``: then
        the client is still writing when the status comes, which grpcio's aio client alone
        reports as INTERNAL "Internal error from Core" about half the time (the provider's
        ``_ServerStatusFirst`` keeps the server's status).
        """
        self.calls.append(method)
        self.deadlines.append(context.time_remaining())
        key = dict(context.invocation_metadata()).get("x-goog-api-key")
        self.keys.append(key if isinstance(key, str) else None)
        code, details = None, ""
        if self.failures:
            code = self.failures.pop(0)
            details = f"fake Speech refuses with {code.name}"
        elif key != self.key:
            code, details = grpc.StatusCode.UNAUTHENTICATED, "API key not valid."
        if code is not None:
            if requests is not None and not self.refuse_at_once:
                async for _ in requests:
                    pass
            await context.abort(code, details)
        if self.hang:
            await asyncio.Event().wait()


def _alternative(api: ModuleType, text: str, confidence: float) -> Any:
    """A recognition alternative with one timed word per word of ``text``."""
    start, end = ("start_time", "end_time") if api is v1 else ("start_offset", "end_offset")
    words = [
        api.WordInfo(
            word=w,
            confidence=confidence,
            **{start: timedelta(seconds=0.3 * i), end: timedelta(seconds=0.3 * i + 0.25)},
        )
        for i, w in enumerate(text.split())
    ]
    return api.SpeechRecognitionAlternative(transcript=text, confidence=confidence, words=words)


def _result(api: ModuleType, text: str, *, final: bool) -> Any:
    return api.StreamingRecognizeResponse(
        results=[
            api.StreamingRecognitionResult(
                alternatives=[_alternative(api, text, 0.93 if final else 0.8)],
                is_final=final,
                language_code="en-US",
            )
        ]
    )


def _event(api: ModuleType, name: str, *, billed: float | None = None) -> Any:
    kwargs: dict[str, Any] = {}
    if billed is not None and api is v1:
        kwargs["total_billed_time"] = timedelta(seconds=billed)
    elif billed is not None:
        kwargs["metadata"] = v2.RecognitionResponseMetadata(
            total_billed_duration=timedelta(seconds=billed)
        )
    event = getattr(api.StreamingRecognizeResponse.SpeechEventType, name)
    return api.StreamingRecognizeResponse(speech_event_type=event, **kwargs)


def _speech_service(api: ModuleType, state: FakeSpeech) -> grpc.GenericRpcHandler:
    """The ``google.cloud.speech.<v1|v2>.Speech`` service of the fake."""
    version = "v1" if api is v1 else "v2"

    async def streaming_recognize(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        await state.admit(context, f"{version}/StreamingRecognize", requests)
        first = True
        call_bytes = 0
        async for request in requests:
            if first:  # the config comes first, alone
                state.configs.append(request.streaming_config)
                if api is v2:
                    state.recognizers.append(request.recognizer)
                first = False
                continue
            audio = request.audio_content if api is v1 else request.audio
            call_bytes += len(audio)
            state.audio_bytes += len(audio)
            if state.mute:
                continue
            if call_bytes >= 16000 and call_bytes - len(audio) < 16000:  # 0.5 s of 16 kHz
                yield _event(api, "SPEECH_ACTIVITY_BEGIN")
                yield _result(api, "Hello", final=False)
            elif state.chatty and call_bytes // 16000 > (call_bytes - len(audio)) // 16000:
                yield _result(api, "Hello", final=False)
        if state.mute:
            await asyncio.Event().wait()
        # the client half-closed: the utterance is over
        yield _result(api, _FINAL, final=True)
        yield _event(api, "SPEECH_ACTIVITY_END", billed=call_bytes / 32000)

    async def recognize(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await state.admit(context, f"{version}/Recognize")
        state.configs.append(request.config)
        if api is v1:
            state.audio_bytes += len(request.audio.content)
        else:
            state.recognizers.append(request.recognizer)
            state.audio_bytes += len(request.content)
        return api.RecognizeResponse(
            results=[
                api.SpeechRecognitionResult(
                    alternatives=[_alternative(api, _FINAL, 0.93)], language_code="en-US"
                )
            ]
        )

    return grpc.method_handlers_generic_handler(
        f"google.cloud.speech.{version}.Speech",
        {
            "StreamingRecognize": grpc.stream_stream_rpc_method_handler(
                streaming_recognize,
                request_deserializer=api.StreamingRecognizeRequest.deserialize,
                response_serializer=api.StreamingRecognizeResponse.serialize,
            ),
            "Recognize": grpc.unary_unary_rpc_method_handler(
                recognize,
                request_deserializer=api.RecognizeRequest.deserialize,
                response_serializer=api.RecognizeResponse.serialize,
            ),
        },
    )


@pytest.fixture
async def fake_speech() -> AsyncIterator[FakeSpeech]:
    state = FakeSpeech()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([_speech_service(v1, state), _speech_service(v2, state)])
    port = server.add_insecure_port("127.0.0.1:0")
    state.endpoint = f"127.0.0.1:{port}"
    await server.start()
    try:
        yield state
    finally:
        await server.stop(grace=None)


def _build(fake: FakeSpeech, tmp_path: Path, key: str = _KEY, **options: Any) -> stt.STT:
    settings = make_settings(tmp_path, google_api_key=key)
    return registry.build(
        "stt", "google", {"endpoint": fake.endpoint, **options}, settings=settings
    )


def _frames(seconds: float, *, loud: bool = False) -> list[rtc.AudioFrame]:
    """20 ms frames of 16 kHz audio: silence, or a 440 Hz tone at about -21 dBFS."""
    tone = (3000 * np.sin(2 * np.pi * 440 * np.arange(320) / 16000)).astype(np.int16)
    data = tone.tobytes() if loud else bytes(640)
    return [rtc.AudioFrame(data, 16000, 1, 320) for _ in range(int(seconds * 50))]


async def _stream(
    engine: stt.STT,
    frames: list[rtc.AudioFrame],
    opts: APIConnectOptions,
    *,
    end_input: bool = True,
    wait: float = 60.0,
) -> list[Any]:
    """Push ``frames`` into a stream and collect its events.

    With ``end_input`` the input is closed and the events are collected to the stream's end
    (over ``wait`` seconds is an error); without, the input stays open (a caller still
    there) and the events are those of the first ``wait`` seconds.
    """
    stream = engine.stream(conn_options=opts)
    for frame in frames:
        stream.push_frame(frame)
    if end_input:
        stream.end_input()
    events: list[stt.SpeechEvent] = []
    try:
        async with asyncio.timeout(wait):
            async for event in stream:
                events.append(event)
    except TimeoutError:
        if end_input:
            raise
    finally:
        await stream.aclose()
    return events


async def _transcribe(engine: stt.STT, seconds: float, opts: APIConnectOptions) -> list[Any]:
    """Stream ``seconds`` of silence, close the input, and collect every event."""
    return await _stream(engine, _frames(seconds), opts)


async def test_streams_interim_and_final_transcripts(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None
) -> None:
    engine = _build(fake_speech, tmp_path, languages=["en-US", "de-DE"])
    try:
        events = await _transcribe(engine, 2.5, APIConnectOptions(max_retry=0, timeout=10.0))
    finally:
        await engine.aclose()
    speech = [e for e in events if e.type != stt.SpeechEventType.RECOGNITION_USAGE]
    assert [e.type.value for e in speech] == [
        "start_of_speech",
        "interim_transcript",
        "final_transcript",
        "end_of_speech",
    ]
    assert speech[1].alternatives[0].text == "Hello"
    final = speech[2].alternatives[0]
    assert final.text == _FINAL
    assert final.confidence == pytest.approx(0.93)
    assert [str(w) for w in final.words or []] == _FINAL.split()
    usage = [e for e in events if e.type == stt.SpeechEventType.RECOGNITION_USAGE]
    assert sum(e.recognition_usage.audio_duration for e in usage) == pytest.approx(2.5)
    # the default model is served by Speech v1
    assert fake_speech.calls == ["v1/StreamingRecognize"]
    assert fake_speech.keys == [_KEY]
    sent = fake_speech.configs[0]
    assert sent.config.model == "latest_long"
    assert sent.config.language_code == "en-US"
    assert list(sent.config.alternative_language_codes) == ["de-DE"]
    assert sent.config.encoding == v1.RecognitionConfig.AudioEncoding.LINEAR16
    assert sent.config.sample_rate_hertz == 16000
    assert sent.interim_results
    assert fake_speech.audio_bytes == 2.5 * 32000  # every pushed byte reached the server


async def test_speech_v2_names_the_recognizer(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None
) -> None:
    engine = _build(
        fake_speech,
        tmp_path,
        model="chirp_3",
        languages=["en-US", "fr-FR"],
        location="europe-west4",
        project="thinnest-test",
    )
    try:
        events = await _transcribe(engine, 1.0, APIConnectOptions(max_retry=0, timeout=10.0))
    finally:
        await engine.aclose()
    finals = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert [e.alternatives[0].text for e in finals] == [_FINAL]
    assert fake_speech.calls == ["v2/StreamingRecognize"]
    assert fake_speech.recognizers == [
        "projects/thinnest-test/locations/europe-west4/recognizers/_"
    ]
    sent = fake_speech.configs[0]
    assert sent.config.model == "chirp_3"
    assert list(sent.config.language_codes) == ["en-US", "fr-FR"]
    assert sent.config.explicit_decoding_config.sample_rate_hertz == 16000
    assert sent.streaming_features.interim_results
    assert fake_speech.audio_bytes == 32000


async def test_recognize_sends_the_whole_buffer(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None
) -> None:
    engine = _build(fake_speech, tmp_path, model="chirp_2", project="thinnest-test")
    try:
        async with asyncio.timeout(60):
            event = await engine.recognize(
                _frames(1.0), conn_options=APIConnectOptions(max_retry=0, timeout=10.0)
            )
    finally:
        await engine.aclose()
    assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    assert event.alternatives[0].text == _FINAL
    assert fake_speech.calls == ["v2/Recognize"]
    assert fake_speech.recognizers == ["projects/thinnest-test/locations/global/recognizers/_"]
    assert fake_speech.configs[0].model == "chirp_2"
    assert fake_speech.audio_bytes == 32000
    deadline = fake_speech.deadlines[0]
    assert deadline is not None and 0 < deadline <= 10.0  # conn_options.timeout on the wire


@pytest.mark.parametrize("at_once", [False, True], ids=["after-the-audio", "while-writing"])
@pytest.mark.parametrize(
    ("key", "failure", "status"),
    [("wrong", None, 401), (_KEY, grpc.StatusCode.PERMISSION_DENIED, 403)],
    ids=["unauthenticated", "permission-denied"],
)
async def test_refusal_is_a_final_error(
    fake_speech: FakeSpeech,
    tmp_path: Path,
    offline: None,
    key: str,
    failure: grpc.StatusCode | None,
    status: int,
    at_once: bool,
) -> None:
    fake_speech.refuse_at_once = at_once
    if failure is not None:
        fake_speech.failures.append(failure)
    engine = _build(fake_speech, tmp_path, key=key)
    errors: list[stt.STTError] = []
    engine.on("error", errors.append)
    try:
        with pytest.raises(APIStatusError) as err:
            await _transcribe(
                engine, 0.5, APIConnectOptions(max_retry=3, retry_interval=0.1, timeout=10.0)
            )
    finally:
        await engine.aclose()
    assert err.value.status_code == status
    assert not err.value.retryable
    assert fake_speech.calls == ["v1/StreamingRecognize"]  # never retried
    assert fake_speech.keys == [key]
    assert [e.recoverable for e in errors] == [False]


@pytest.mark.parametrize("at_once", [False, True], ids=["after-the-audio", "while-writing"])
async def test_unavailable_is_retried(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None, at_once: bool
) -> None:
    fake_speech.refuse_at_once = at_once
    fake_speech.failures.append(grpc.StatusCode.UNAVAILABLE)
    engine = _build(fake_speech, tmp_path)
    errors: list[stt.STTError] = []
    engine.on("error", errors.append)
    try:
        events = await _transcribe(
            engine, 1.0, APIConnectOptions(max_retry=2, retry_interval=0.1, timeout=10.0)
        )
    finally:
        await engine.aclose()
    assert fake_speech.calls == ["v1/StreamingRecognize"] * 2
    assert [e.recoverable for e in errors] == [True]
    assert isinstance(errors[0].error, APIStatusError)
    assert errors[0].error.status_code == 503 and errors[0].error.retryable
    finals = [e for e in events if e.type == stt.SpeechEventType.FINAL_TRANSCRIPT]
    assert [e.alternatives[0].text for e in finals] == [_FINAL]


async def test_unavailable_until_retries_run_out(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None
) -> None:
    fake_speech.failures.extend([grpc.StatusCode.UNAVAILABLE] * 3)
    engine = _build(fake_speech, tmp_path)
    try:
        with pytest.raises(APIConnectionError) as err:
            await _transcribe(
                engine, 0.5, APIConnectOptions(max_retry=1, retry_interval=0.1, timeout=10.0)
            )
    finally:
        await engine.aclose()
    assert isinstance(err.value.__cause__, APIStatusError)
    assert err.value.__cause__.status_code == 503
    assert fake_speech.calls == ["v1/StreamingRecognize"] * 2


async def test_silent_server_is_a_timeout(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None
) -> None:
    fake_speech.hang = True
    # Speech v2 here; v1 (whose client library retries a deadline) in the test below.
    engine = _build(fake_speech, tmp_path, model="chirp_2", project="thinnest-test")
    try:
        with pytest.raises(APITimeoutError):
            async with asyncio.timeout(60):
                await engine.recognize(
                    _frames(0.5), conn_options=APIConnectOptions(max_retry=0, timeout=1.0)
                )
    finally:
        await engine.aclose()
    assert fake_speech.calls == ["v2/Recognize"]
    deadline = fake_speech.deadlines[0]
    assert deadline is not None and 0 < deadline <= 1.0


async def test_silent_server_is_a_timeout_with_speech_v1_too(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None
) -> None:
    # google-cloud-speech retries v1's Recognize on DeadlineExceeded for up to 5000 s; each
    # of our attempts is bounded as a whole.
    fake_speech.hang = True
    engine = _build(fake_speech, tmp_path)
    try:
        with pytest.raises(APIConnectionError) as err:
            async with asyncio.timeout(60):
                await engine.recognize(
                    _frames(0.5),
                    conn_options=APIConnectOptions(max_retry=1, retry_interval=0.1, timeout=1.0),
                )
    finally:
        await engine.aclose()
    assert isinstance(err.value.__cause__, APITimeoutError)
    assert set(fake_speech.calls) == {"v1/Recognize"}
    assert 2 <= len(fake_speech.calls) <= 3  # two attempts (max_retry=1), none beyond


_WATCHED = APIConnectOptions(max_retry=0, timeout=1.0)


async def test_stream_unanswered_while_the_user_speaks_is_a_timeout(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None
) -> None:
    # the plugin sets no deadline on streams: without the watch this waits forever
    fake_speech.mute = True
    engine = _build(fake_speech, tmp_path)
    errors: list[stt.STTError] = []
    engine.on("error", errors.append)
    started = time.monotonic()
    try:
        with pytest.raises(APITimeoutError):
            await _stream(engine, _frames(3.0, loud=True), _WATCHED, end_input=False, wait=20)
    finally:
        await engine.aclose()
    assert 1.0 <= time.monotonic() - started < 10.0
    assert [e.error.__class__ for e in errors] == [APITimeoutError]
    assert fake_speech.calls == ["v1/StreamingRecognize"]
    assert fake_speech.audio_bytes == 3 * 32000


@pytest.mark.parametrize(
    "speech",
    [
        pytest.param(False, id="silence-unanswered"),  # Google says nothing then: no stall
        pytest.param(True, id="speech-answered-every-half-second"),
    ],
)
async def test_a_stream_that_goes_on_is_not_stalled(
    fake_speech: FakeSpeech, tmp_path: Path, offline: None, speech: bool
) -> None:
    fake_speech.mute, fake_speech.chatty = not speech, speech
    engine = _build(fake_speech, tmp_path)
    try:
        events = await _stream(engine, _frames(3.0, loud=speech), _WATCHED, end_input=False, wait=3)
    finally:
        await engine.aclose()
    interims = [e for e in events if e.type == stt.SpeechEventType.INTERIM_TRANSCRIPT]
    assert len(interims) == (6 if speech else 0)  # one per 0.5 s of the 3 s
    assert fake_speech.calls == ["v1/StreamingRecognize"]


async def test_default_client_dials_google_with_the_key(tmp_path: Path) -> None:
    engine = registry.build(
        "stt", "google", {}, settings=make_settings(tmp_path, google_api_key=_KEY)
    )
    client = await engine._create_client(5.0)  # the plugin's own factory; connects nothing
    try:
        assert client.transport._host.startswith("speech.googleapis.com")
        assert client.transport._credentials.token == _KEY
    finally:
        await client.transport.close()
        await engine.aclose()


def test_endpoint_and_project_options(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, google_api_key=_KEY)
    # with or without an endpoint, the plugin's class with our two changes
    for options in ({}, {"endpoint": "[::1]:9"}):
        built = registry.build("stt", "google", options, settings=settings)
        assert isinstance(built, google_plugin.STT) and type(built) is not google_plugin.STT
    # our list of Speech v2 models is the plugin's
    assert set(google_provider.V2_MODELS) == set(get_args(SpeechModelsV2))
    with pytest.raises(ConfigError, match="needs 'project'"):
        registry.build("stt", "google", {"model": "chirp_3"}, settings=settings)
    for bad in ({"endpoint": "https://speech.example.test"}, {"project": "Bad Project"}):
        with pytest.raises(ConfigError):
            registry.build("stt", "google", bad, settings=settings)


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("127.0.0.1:8080", True),
        ("127.1.2.3:1", True),
        ("localhost:50051", True),
        ("[::1]:443", True),
        ("speech.example.test:443", False),
        ("10.0.0.1:443", False),
        ("localhost.example.test:443", False),
    ],
)
def test_only_loopback_endpoints_go_without_tls(endpoint: str, loopback: bool) -> None:
    assert google_provider.is_loopback(endpoint) is loopback


async def test_remote_endpoint_client_dials_it_with_the_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, google_api_key=_KEY)
    engine = registry.build(
        "stt", "google", {"endpoint": "speech.example.test:443"}, settings=settings
    )
    client = await engine._create_client(5.0)  # builds the channel, connects nothing yet
    try:
        assert client.transport._host == "speech.example.test:443"
        assert client.transport._credentials.token == _KEY
    finally:
        await client.transport.close()
        await engine.aclose()
