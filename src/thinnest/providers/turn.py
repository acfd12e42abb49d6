"""Turn detection: when has the user finished speaking?

``transcript`` (the default) reads the punctuation of the user's transcript: a turn whose
text ends a sentence (``.``, ``?``, ``!``) is over after ``endpointing_min_delay``; text that
breaks off ("Can you tell me the opening hours of", "I want to ref-", "so...") holds the turn
open up to ``endpointing_max_delay``. Whisper, Deepgram and Google all punctuate by default;
with an STT that writes no punctuation every turn would wait the maximum, so choose
``livekit`` there. Measured by ``thinnest bench turn`` (docs/benchmarks.md): on the speech
corpus it ends 97 % of finished sentences at once, where the audio model below held two in
three open; it holds a third of the pauses inside sentences (Whisper writes the rest as
sentences of their own, "I need to change.", and there the turn ends as on silence alone).

``livekit``: LiveKit's audio end-of-turn model, run locally.

livekit-agents' ``inference.TurnDetector`` with ``version="v1-mini"`` runs the
``turn-detector-v1-mini`` model of ``livekit-local-inference`` (a dependency of
livekit-agents; the weights are compiled into its native module, about 108 MB, so nothing
is downloaded). It listens to the user's audio and tells the session whether a pause ends
the turn, meant to answer sooner after a finished sentence and wait longer after a pause
mid-thought; on our synthetic voices and three human recordings it barely told them apart
(``thinnest bench turn``). The ``livekit-plugins-turn-detector`` text models are not used: they
download their weights at run time.

The model is under the LiveKit Model License: use it only with LiveKit Agents (which this
is).

Option ``mode="vad"`` skips the model and ends turns on VAD silence alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.errors import ConfigError

if TYPE_CHECKING:
    from livekit.agents import llm

__all__ = [
    "TranscriptTurnDetector",
    "TranscriptTurnOptions",
    "TurnOptions",
    "build",
    "build_transcript",
    "finished",
]


class TurnOptions(BaseModel):
    """Options of the ``livekit`` turn detection.

    Attributes:
        mode: ``model`` runs the end-of-turn model; ``vad`` ends turns on silence only.
        unlikely_threshold: override of the model's calibrated "turn is not over"
            threshold (leave unset unless you measured better).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["model", "vad"] = "model"
    unlikely_threshold: float | None = Field(None, gt=0.0, lt=1.0)


def build(options: TurnOptions, settings: Settings) -> Any:
    """Factory of the ``livekit`` turn detection.

    Returns:
        A local ``livekit.agents.inference.TurnDetector``, or the string ``"vad"`` (a
        livekit-agents ``TurnDetectionMode``) when ``mode="vad"``.
    """
    if options.mode == "vad":
        return "vad"
    try:
        from livekit.agents.inference import TurnDetector
    except ImportError as exc:  # livekit-local-inference has no wheel for this platform
        raise ConfigError(
            "the livekit turn detector needs livekit-local-inference; use options "
            '{"mode": "vad"} on this platform',
            code="provider_not_installed",
        ) from exc
    kwargs: dict[str, Any] = {}
    if options.unlikely_threshold is not None:
        kwargs["unlikely_threshold"] = options.unlikely_threshold
    return TurnDetector(version="v1-mini", **kwargs)


#: Marks that end a sentence, Latin and CJK.
_SENTENCE_ENDS = frozenset(".?!。？！")
#: Closing quotes and brackets after a sentence's last mark.
_CLOSERS = "\"'”’)]}»"


def finished(text: str) -> bool:
    """Whether a transcript ends a sentence: its last mark is ``.``, ``?`` or ``!``.

    An ellipsis ("so...") or a hyphen ("ref-") is a voice trailing off, not an end. Empty
    text is finished: there is nothing to wait for.
    """
    text = text.rstrip().rstrip(_CLOSERS).rstrip()
    if not text:
        return True
    if text.endswith(("..", "…", "-", "—")):
        return False
    return text[-1] in _SENTENCE_ENDS


class TranscriptTurnOptions(BaseModel):
    """Options of the ``transcript`` turn detection (none yet)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TranscriptTurnDetector:
    """A livekit-agents text turn detector that reads the user's punctuation.

    The session asks it after the VAD's end of speech and after each final transcript, with
    the conversation so far; the user's words of this turn are its last user message.
    """

    @property
    def model(self) -> str:
        return "transcript-punctuation"

    @property
    def provider(self) -> str:
        return "thinnest"

    async def unlikely_threshold(self, language: str | None) -> float:
        return 0.5

    async def supports_language(self, language: str | None) -> bool:
        return True

    async def predict_end_of_turn(
        self,
        chat_ctx: llm.ChatContext,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (livekit-agents' signature)
    ) -> float:
        """1.0 when the user's last message ends a sentence, else 0.0."""
        for item in reversed(chat_ctx.items):
            if item.type == "message" and item.role == "user":
                return 1.0 if finished(item.text_content or "") else 0.0
        return 1.0


def build_transcript(options: TranscriptTurnOptions, settings: Settings) -> TranscriptTurnDetector:
    """Factory of the ``transcript`` turn detection."""
    return TranscriptTurnDetector()
