"""The options of the ``whisper`` STT, and the audio it hears."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PROMPT_TOKENS", "SAMPLE_RATE", "WhisperOptions"]

SAMPLE_RATE = 16000
PROMPT_TOKENS = 96  # the most tokens of prompt and context one decode is given (Whisper: 223)


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
