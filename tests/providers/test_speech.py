"""The offline speech providers run for real, with the network refused.

whisper transcribes espeak-ng speech; hibari, piper and espeak speak, and whisper
transcribes them back; silero finds the speech; the LiveKit turn detector scores the end of a turn.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from livekit.agents import stt, tts, vad

from livekit import rtc
from thinnest.errors import ConfigError
from thinnest.providers import registry

from .conftest import Speech, espeak, word_error_rate, words

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("offline")]


@pytest.fixture(scope="session")
def whisper_base(models_settings) -> stt.STT:
    return registry.build("stt", "whisper", {"model": "base"}, settings=models_settings)


@pytest.mark.parametrize("rate", [16000, 48000], ids=["16kHz", "48kHz-resampled"])
async def test_whisper_base_transcribes_speech(whisper_base, booking: Speech, rate: int) -> None:
    event = await whisper_base.recognize(booking.frames(rate))
    assert event.type == stt.SpeechEventType.FINAL_TRANSCRIPT
    text = event.alternatives[0].text
    assert word_error_rate(booking.text, text) <= 0.1, text
    assert event.alternatives[0].language == "en"  # speed: `thinnest bench speech`


@pytest.mark.parametrize("window", ["fit", "full"])
async def test_whisper_tiny_en_transcribes_speech(
    models_settings, booking: Speech, window: str
) -> None:
    tiny = registry.build(
        "stt", "whisper", {"model": "tiny.en", "window": window}, settings=models_settings
    )
    assert tiny.model == "whisper-tiny.en"
    event = await tiny.recognize(booking.frames())
    assert word_error_rate(booking.text, event.alternatives[0].text) <= 0.2
    assert 0 < event.alternatives[0].confidence <= 1


@pytest.mark.parametrize("answer", ["Paris.", "Tomorrow.", "Okay."])
async def test_whisper_tiny_en_hears_a_one_word_answer_once(
    models_settings, tmp_path: Path, answer: str
) -> None:
    # In a window its own length tiny.en writes most single words two or three times.
    tiny = registry.build("stt", "whisper", {"model": "tiny.en"}, settings=models_settings)
    speech = espeak(answer, tmp_path / "answer.wav")
    silence = np.zeros(speech.sample_rate // 2, np.int16)
    padded = Speech(answer, np.concatenate([silence, speech.pcm, silence]), speech.sample_rate)
    event = await tiny.recognize(padded.frames())
    heard = words(event.alternatives[0].text)
    # Once; the spelling may differ by CPU ("okay" / "ok"), the word not.
    assert len(heard) == 1 and heard[0] in _SPELLINGS.get(answer, words(answer)), heard


_SPELLINGS = {"Okay.": ["okay", "ok"]}


async def test_whisper_fit_window_takes_long_audio_whole(models_settings, tmp_path: Path) -> None:
    """Past 29 s an utterance no longer fits one short window: faster-whisper's 30 s windows
    take it, the part after the first 30 s included."""
    tiny = registry.build("stt", "whisper", {"model": "tiny.en"}, settings=models_settings)
    sentences = [
        "The weather was cold and windy all morning.",
        "We walked along the river to the old bridge.",
        "A small boat carried fish to the market.",
        "My brother bought fresh bread and cheese there.",
        "In the afternoon the sun came out at last.",
        "Then we sat in the garden and read our books.",
        "Everyone went home before dinner.",
    ]
    gap = np.zeros(8000, dtype=np.int16)
    parts = [
        np.concatenate([_at_16k(espeak(t, tmp_path / f"{i}.wav")), gap])
        for i, t in enumerate(sentences)
    ]
    head = np.concatenate(parts)[: 30 * 16000]
    head = np.concatenate([head, np.zeros(int(30.5 * 16000) - len(head), dtype=np.int16)])
    tail = _at_16k(espeak("Please call me back later.", tmp_path / "tail.wav"))
    pcm = np.concatenate([head, tail, gap])
    event = await tiny.recognize([rtc.AudioFrame(pcm.tobytes(), 16000, 1, len(pcm))])
    text = event.alternatives[0].text.lower()
    assert "river" in text and "later" in text, text


async def test_whisper_returns_empty_text_for_silence(whisper_base) -> None:
    silence = rtc.AudioFrame(bytes(16000 * 2), 16000, 1, 16000)
    event = await whisper_base.recognize([silence])
    assert len(event.alternatives[0].text.split()) <= 2  # whisper may hallucinate a word


async def test_whisper_refuses_a_corrupt_cache(tmp_path: Path, models_settings) -> None:
    from .conftest import make_settings

    settings = make_settings(tmp_path)
    registry.build("stt", "whisper", {"model": "tiny.en"}, settings=settings)
    model_bin = settings.resolved_models_dir / "whisper-tiny.en" / "model.bin"
    model_bin.write_bytes(b"\0" * model_bin.stat().st_size)
    with pytest.raises(ConfigError, match="delete the directory"):
        registry.build("stt", "whisper", {"model": "tiny.en"}, settings=settings)


async def _synthesize(engine: tts.TTS, text: str) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    first: float | None = None
    chunks = []
    async with engine.synthesize(text) as stream:
        async for audio in stream:
            if first is None:
                first = time.perf_counter() - started
            assert audio.frame.sample_rate == engine.sample_rate
            chunks.append(np.frombuffer(audio.frame.data, dtype=np.int16))
    assert first is not None
    return np.concatenate(chunks), first


def _as_speech(pcm: np.ndarray, rate: int, text: str) -> Speech:
    return Speech(text=text, pcm=pcm, sample_rate=rate)


@pytest.mark.parametrize("name", ["hibari", "piper", "espeak"])
async def test_tts_speaks_what_whisper_understands(models_settings, whisper_base, name) -> None:
    engine = registry.build("tts", name, {}, settings=models_settings)
    text = "Your table for two is booked for seven o'clock tomorrow evening."
    pcm, first_audio = await _synthesize(engine, text)
    duration = pcm.size / engine.sample_rate
    assert 2.0 < duration < 8.0
    assert 0 < first_audio  # how fast: `thinnest bench speech`
    assert np.abs(pcm).max() > 1000  # not silence
    event = await whisper_base.recognize(_as_speech(pcm, engine.sample_rate, text).frames())
    assert word_error_rate(text, event.alternatives[0].text) <= 0.25, event.alternatives[0].text


async def test_piper_streams_sentence_by_sentence(models_settings) -> None:
    engine = registry.build("tts", "piper", {}, settings=models_settings)
    one, first_one = await _synthesize(engine, "Hello there.")
    three, first_three = await _synthesize(
        engine, "Hello there. This is a second, longer sentence. And here is a third one."
    )
    assert three.size > 2 * one.size
    # the first sentence is heard before the rest is synthesised
    assert first_three < 3 * max(first_one, 0.05)
    assert engine.sample_rate == 22050


async def test_espeak_reads_text_that_looks_like_an_option(models_settings) -> None:
    engine = registry.build("tts", "espeak", {}, settings=models_settings)
    pcm, _ = await _synthesize(engine, "--help me please")
    assert pcm.size / engine.sample_rate > 0.5


async def test_silero_finds_the_speech(models_settings, booking: Speech) -> None:
    detector = registry.build("vad", "silero", {}, settings=models_settings)
    assert isinstance(detector, vad.VAD)
    silence = np.zeros(booking.sample_rate, dtype=np.int16)
    pcm = np.concatenate([silence, booking.pcm, silence])
    padded = Speech(booking.text, pcm, booking.sample_rate)
    stream = detector.stream()
    for frame in padded.frames(16000):
        stream.push_frame(frame)
    stream.end_input()
    kinds = []
    async for event in stream:
        if event.type != vad.VADEventType.INFERENCE_DONE:
            kinds.append(event.type)
    await stream.aclose()
    assert kinds[0] == vad.VADEventType.START_OF_SPEECH
    assert vad.VADEventType.END_OF_SPEECH in kinds


async def test_turn_detector_runs_locally(models_settings, booking: Speech) -> None:
    detector = registry.build("turn_detection", "livekit", {}, settings=models_settings)
    assert detector.model == "turn-detector-v1-mini"
    stream = detector.stream()
    try:
        for frame in booking.frames(16000):
            stream.push_audio(frame)
        for _ in range(25):
            stream.push_audio(rtc.AudioFrame(bytes(640), 16000, 1, 320))
        await asyncio.sleep(0.3)  # let the stream take the audio in
        event = await asyncio.wait_for(stream.predict(), timeout=10)
    finally:
        await stream.aclose()
    assert 0.0 < event.end_of_turn_probability <= 1.0
    assert event.inference_duration is not None and event.inference_duration < 2.0


def test_turn_detection_vad_only_mode(models_settings) -> None:
    built = registry.build("turn_detection", "livekit", {"mode": "vad"}, settings=models_settings)
    assert built == "vad"


async def test_espeak_unknown_voice_is_a_provider_error(models_settings, tmp_path: Path) -> None:
    from thinnest.errors import ProviderError

    engine = registry.build("tts", "espeak", {"voice": "xx-nonexistent"}, settings=models_settings)
    with pytest.raises(ProviderError, match="espeak-ng"):
        await _synthesize(engine, "hello")
    # the fixture helper is exercised too: espeak-ng itself works
    assert espeak("ok", tmp_path / "ok.wav").duration > 0.1


async def _stream(engine: stt.STT, pcm: np.ndarray, *, realtime: bool) -> list[stt.SpeechEvent]:
    stream = engine.stream()
    speech = Speech("", pcm, 16000)

    async def feed() -> None:
        for frame in speech.frames():
            stream.push_frame(frame)
            if realtime:
                await asyncio.sleep(0.02)
        stream.end_input()

    feeder = asyncio.create_task(feed())
    events = [event async for event in stream]
    await feeder
    await stream.aclose()
    return events


def _kinds(events: list[stt.SpeechEvent]) -> list[str]:
    return [e.type.value for e in events if e.type != stt.SpeechEventType.RECOGNITION_USAGE]


def _at_16k(speech: Speech, *, trim: bool = False) -> np.ndarray:
    pcm = np.concatenate([f.data for f in speech.frames(16000)]).astype(np.int16)
    if trim:  # drop the silence espeak-ng leaves around the words
        loud = np.flatnonzero(np.abs(pcm) > 300)
        pcm = pcm[loud[0] : loud[-1] + 1]
    return pcm


@pytest.fixture(scope="session")
def tiny_stream(models_settings) -> stt.STT:
    return registry.build("stt", "whisper", {"model": "tiny.en"}, settings=models_settings)


async def test_whisper_streams_an_utterance_cut_by_its_vad(tiny_stream, booking: Speech) -> None:
    assert tiny_stream.capabilities.streaming
    silence = np.zeros(16000, dtype=np.int16)
    events = await _stream(
        tiny_stream, np.concatenate([silence, _at_16k(booking), silence]), realtime=False
    )
    assert _kinds(events) == ["start_of_speech", "end_of_speech", "final_transcript"]
    final = events[-1]
    assert word_error_rate(booking.text, final.alternatives[0].text) <= 0.2
    assert final.speech_end_time is not None


async def test_whisper_stream_keeps_a_sentence_with_a_short_pause_whole(
    tiny_stream, tmp_path: Path
) -> None:
    first = espeak("I would like to book a table", tmp_path / "a.wav")
    second = espeak("for two people tomorrow evening", tmp_path / "b.wav")
    pause = np.zeros(int(16000 * 0.25), dtype=np.int16)  # past preflight, short of the end
    silence = np.zeros(16000, dtype=np.int16)
    pcm = np.concatenate(
        [silence, _at_16k(first, trim=True), pause, _at_16k(second, trim=True), silence]
    )
    events = await _stream(tiny_stream, pcm, realtime=True)
    # One utterance (interim transcripts may come while it is spoken).
    kinds = [k for k in _kinds(events) if k != "interim_transcript"]
    assert kinds == ["start_of_speech", "end_of_speech", "final_transcript"]
    text = events[-1].alternatives[0].text
    assert word_error_rate(first.text + " " + second.text, text) <= 0.2, text


async def test_whisper_stream_sends_partial_transcripts_while_the_user_speaks(
    tiny_stream, tmp_path: Path
) -> None:
    said = espeak(
        "I would like to book a table for four people on Friday evening at the Italian place",
        tmp_path / "long.wav",
    )
    silence = np.zeros(16000, dtype=np.int16)
    pcm = np.concatenate([silence, _at_16k(said, trim=True), silence])
    assert pcm.size > 16000 * 4  # several interim intervals (0.7 s) of speech
    events = await _stream(tiny_stream, pcm, realtime=True)
    kinds = _kinds(events)
    # Partial transcripts come between the start and the end of speech, never after.
    assert kinds[0] == "start_of_speech" and kinds[-2:] == ["end_of_speech", "final_transcript"]
    assert set(kinds[1:-2]) == {"interim_transcript"}, kinds
    partials = [e.alternatives[0].text for e in events if e.type.value == "interim_transcript"]
    assert all(text.strip() for text in partials)
    final = events[-1].alternatives[0].text
    assert word_error_rate(said.text, final) <= 0.2, final


async def test_whisper_stream_finalises_from_the_preflight(tiny_stream, booking: Speech) -> None:
    silence = np.zeros(16000, dtype=np.int16)
    pause = np.zeros(int(16000 * 0.3), dtype=np.int16)  # past preflight (0.15 s), before end
    stream = tiny_stream.stream()
    seen: dict[str, float] = {}

    async def feed() -> None:
        for frame in Speech("", np.concatenate([silence, _at_16k(booking), pause]), 16000).frames():
            stream.push_frame(frame)
        await asyncio.sleep(3.0)  # the user is silent: the preflight transcription runs
        for frame in Speech("", silence, 16000).frames():
            stream.push_frame(frame)
        stream.end_input()

    feeder = asyncio.create_task(feed())
    async for event in stream:
        seen.setdefault(event.type.value, time.perf_counter())
    await feeder
    await stream.aclose()
    # the final transcript follows the VAD's end of speech (how soon: `thinnest bench speech`)
    assert seen["end_of_speech"] <= seen["final_transcript"]
    print(f"end of speech -> final: {seen['final_transcript'] - seen['end_of_speech']:.3f} s")


async def test_whisper_stream_sends_interim_transcripts(models_settings, booking: Speech) -> None:
    engine = registry.build(
        "stt", "whisper", {"model": "tiny.en", "interim_results": True}, settings=models_settings
    )
    assert engine.capabilities.interim_results
    silence = np.zeros(16000, dtype=np.int16)
    events = await _stream(
        engine, np.concatenate([silence, _at_16k(booking), silence]), realtime=True
    )
    kinds = _kinds(events)
    assert "interim_transcript" in kinds
    assert kinds.index("interim_transcript") < kinds.index("end_of_speech")
    assert kinds[-1] == "final_transcript"
    interim = next(e for e in events if e.type == stt.SpeechEventType.INTERIM_TRANSCRIPT)
    assert words(interim.alternatives[0].text)[:1] == ["hello"]  # the start of the sentence


async def test_whisper_stream_separates_two_utterances(tiny_stream, tmp_path: Path) -> None:
    first = espeak("Good morning.", tmp_path / "a.wav")
    second = espeak("Please call me back later.", tmp_path / "b.wav")
    gap = np.zeros(int(16000 * 1.5), dtype=np.int16)
    pcm = np.concatenate([gap, _at_16k(first), gap, _at_16k(second), gap])
    events = await _stream(tiny_stream, pcm, realtime=False)
    finals = [e.alternatives[0].text for e in events if e.type.value == "final_transcript"]
    assert len(finals) == 2, finals
    assert word_error_rate(first.text, finals[0]) <= 0.34
    assert word_error_rate(second.text, finals[1]) <= 0.2


def test_whisper_without_streaming_needs_a_vad(models_settings) -> None:
    engine = registry.build("stt", "whisper", {"streaming": False}, settings=models_settings)
    assert not engine.capabilities.streaming
    with pytest.raises(ConfigError, match="non-streaming"):
        engine.stream()


@pytest.mark.parametrize(
    ("language", "model"), [("en", "whisper-tiny.en"), ("de", "whisper-base")], ids=["en", "de"]
)
def test_whisper_auto_picks_the_fast_model_for_english(models_settings, language, model) -> None:
    engine = registry.build("stt", "whisper", {"language": language}, settings=models_settings)
    assert engine.model == model


@pytest.mark.parametrize(
    ("options", "beams"),
    [
        ({}, 5),  # auto: tiny.en for English, with 5 beams
        ({"model": "base"}, 1),  # base is 3x slower per beam: greedy
        ({"language": "de"}, 1),  # auto: base for German
        ({"model": "base", "beam_size": 3}, 3),
        ({"beam_size": 1}, 1),
    ],
)
def test_whisper_beams_follow_the_model(models_settings, options, beams) -> None:
    opts = registry.validate("stt", "whisper", options, settings=models_settings)
    assert opts.resolved_beam_size == beams


def test_piper_cuts_the_first_clause_only() -> None:
    from thinnest.providers.piper import split_first_clause

    assert split_first_clause("Sure, I can help; really.") == ["Sure,", "I can help; really."]
    assert split_first_clause("Yes. Then, no.") == ["Yes. Then, no."]
    assert split_first_clause("It costs 1,000 dollars, ok?") == ["It costs 1,000 dollars,", "ok?"]
    assert split_first_clause("Done.") == ["Done."]


def test_whisper_drops_a_sentence_said_again_after_the_speech() -> None:
    from thinnest.providers.whisper.text import without_repeats

    assert without_repeats("Call me at 6. Call me at 6. Call me") == "Call me at 6."
    # As Whisper base said it in the speech bench: the repeat cut off, its case and stops.
    said = "Set a reminder to call my sister at 6 o'clock. set a reminder to call my sister at 6"
    assert without_repeats(said) == "Set a reminder to call my sister at 6 o'clock."
    assert without_repeats("Good morning. Good morning.") == "Good morning."
    # whisper base on Piper's voice, once in a CI run: the repeat's last word cut off too
    said = (
        "Your table is booked for seven o'clock tomorrow evening. Your table is booked for seven o"
    )
    assert without_repeats(said) == "Your table is booked for seven o'clock tomorrow evening."
    assert without_repeats("Meet me at noon. Meet me at nine") == "Meet me at noon. Meet me at nine"
    # one word over and over: tiny.en's way with a one-word answer in a short window
    assert without_repeats("No. No. No.") == "No."
    assert without_repeats("Paris Paris") == "Paris"
    assert without_repeats("no, no") == "no"
    assert without_repeats("No, no, I said Paris.") == "No, no, I said Paris."
    assert without_repeats("I see. I see what you mean.") == "I see. I see what you mean."
    assert without_repeats("one two three four five") == "one two three four five"
