"""Turn detection ``livekit``: LiveKit's audio end-of-turn model, run locally.

livekit-agents' ``inference.TurnDetector`` with ``version="v1-mini"`` runs the
``turn-detector-v1-mini`` model of ``livekit-local-inference`` (a dependency of
livekit-agents; the weights are compiled into its native module, about 108 MB, so nothing
is downloaded). It listens to the user's audio and tells the session whether a pause ends
the turn, so the agent answers sooner after a finished sentence and waits longer after a
pause mid-thought. The ``livekit-plugins-turn-detector`` text models are not used: they
download their weights at run time.

The model is under the LiveKit Model License: use it only with LiveKit Agents (which this
is).

Option ``mode="vad"`` skips the model and ends turns on VAD silence alone.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from thinnest.config import Settings
from thinnest.errors import ConfigError

__all__ = ["TurnOptions", "build"]


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
