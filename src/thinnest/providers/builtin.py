"""The built-in providers, registered under the ``thinnest.providers`` entry point ``builtin``.

Importing this module is cheap: each vendor module imports its SDK only when a provider is
built, so the API can validate every provider's options without the SDKs installed.
"""

from __future__ import annotations

from thinnest.providers import (
    cartesia,
    deepgram,
    elevenlabs,
    espeak,
    fixed,
    google,
    hibari,
    llama,
    openai,
    piper,
    remote_tts,
    silero,
    turn,
    whisper,
)
from thinnest.providers.registry import Provider

__all__ = ["PROVIDERS"]

PROVIDERS: list[Provider] = [
    Provider(
        "stt",
        "whisper",
        whisper.WhisperOptions,
        whisper.build,
        description="offline faster-whisper (base, tiny.en)",
        plugins=("livekit.plugins.silero",),
        remote=whisper.build_remote,
    ),
    Provider(
        "stt",
        "deepgram",
        deepgram.DeepgramOptions,
        deepgram.build,
        deepgram.check,
        description="Deepgram streaming STT",
        plugins=("livekit.plugins.deepgram",),
    ),
    Provider(
        "stt",
        "google",
        google.GoogleSTTOptions,
        google.build_stt,
        google.check,
        description="Google Cloud Speech STT",
        plugins=("livekit.plugins.google",),
    ),
    Provider(
        "llm",
        "llama",
        llama.LlamaOptions,
        llama.build,
        description="offline llama.cpp with Qwen2.5-Coder-0.5B-Instruct",
        # With THINNEST_MODELS_URL: the shared llama-server, through livekit-plugins-openai.
        plugins=("livekit.plugins.openai",),
        remote=llama.build_remote,
    ),
    Provider(
        "llm",
        "openai",
        openai.OpenAIOptions,
        openai.build,
        openai.check,
        description="any OpenAI-compatible chat-completions endpoint",
        plugins=("livekit.plugins.openai",),
    ),
    Provider(
        "llm",
        "gemini",
        google.GeminiOptions,
        google.build_llm,
        google.check,
        description="Google Gemini",
        plugins=("livekit.plugins.google",),
    ),
    Provider(
        "tts",
        "hibari",
        hibari.HibariOptions,
        hibari.build,
        description="offline hibari-tts, American English heart voice (Apache-2.0)",
        remote=remote_tts.remote("hibari"),
    ),
    Provider(
        "tts",
        "piper",
        piper.PiperOptions,
        piper.build,
        piper.check,
        description="offline piper, en_US joe (GPL-3.0 extra: scripts/setup.sh --piper)",
        remote=remote_tts.remote("piper"),
    ),
    Provider(
        "tts",
        "espeak",
        espeak.EspeakOptions,
        espeak.build,
        espeak.check,
        description="offline espeak-ng (robotic fallback; GPL-3.0: scripts/setup.sh --piper)",
        remote=remote_tts.remote("espeak"),
    ),
    Provider(
        "tts",
        "elevenlabs",
        elevenlabs.ElevenLabsOptions,
        elevenlabs.build,
        elevenlabs.check,
        description="ElevenLabs streaming TTS",
        plugins=("livekit.plugins.elevenlabs",),
    ),
    Provider(
        "tts",
        "cartesia",
        cartesia.CartesiaOptions,
        cartesia.build,
        cartesia.check,
        description="Cartesia streaming TTS",
        plugins=("livekit.plugins.cartesia",),
    ),
    Provider(
        "stt",
        "fixed",
        fixed.FixedSTTOptions,
        fixed.build_stt,
        description="benchmarks/tests only: a set transcript after a set delay",
    ),
    Provider(
        "llm",
        "fixed",
        fixed.FixedLLMOptions,
        fixed.build_llm,
        description="benchmarks/tests only: a set reply after a set time to first token",
    ),
    Provider(
        "tts",
        "fixed",
        fixed.FixedTTSOptions,
        fixed.build_tts,
        description="benchmarks/tests only: a tone after a set time to first byte",
    ),
    Provider(
        "vad",
        "silero",
        silero.SileroOptions,
        silero.build,
        description="offline Silero VAD",
        plugins=("livekit.plugins.silero",),
    ),
    Provider(
        "turn_detection",
        "livekit",
        turn.TurnOptions,
        turn.build,
        description="offline LiveKit end-of-turn model (v1-mini), or VAD only",
    ),
    Provider(
        "turn_detection",
        "transcript",
        turn.TranscriptTurnOptions,
        turn.build_transcript,
        description="offline: a turn ends with a sentence's end in the transcript (.?!)",
    ),
]
