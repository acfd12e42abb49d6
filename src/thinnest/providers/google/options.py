"""The options of the ``google`` STT and the ``gemini`` LLM, and the key both need."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from thinnest.config import Settings
from thinnest.providers._keys import require_key

__all__ = ["V2_MODELS", "GeminiOptions", "GoogleSTTOptions", "check"]

V2_MODELS = ("telephony", "chirp_2", "chirp_3")
"""Models that the plugin serves through Speech v2 (its ``SpeechModelsV2``)."""


class GoogleSTTOptions(BaseModel):
    """Options of the ``google`` STT.

    Attributes:
        model: a Cloud Speech model (``latest_long``, ``chirp_2``, ...).
        languages: BCP-47 codes the speaker may use.
        location: the Cloud Speech region.
        project: the Google Cloud project id. Required by the Speech v2 models
            (``telephony``, ``chirp_2``, ``chirp_3``), whose requests name the recognizer
            ``projects/<project>/locations/<location>/recognizers/_``: an API key carries no
            project, so the plugin cannot find one by itself.
        endpoint: ``host:port`` of the Speech gRPC endpoint, default Google's (regional when
            ``location`` is not ``global``). Change it only for a proxy or a test server. It is
            reached over TLS with the API key, except on a loopback host (``127.0.0.1``,
            ``localhost``, ``::1``): there the connection is plain-text gRPC (still carrying the
            key), which gRPC's local credentials allow only to a loopback peer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("latest_long", min_length=1, max_length=64)
    languages: list[str] = Field(default_factory=lambda: ["en-US"], min_length=1, max_length=4)
    location: str = Field("global", pattern="^[a-z0-9-]+$")
    project: str | None = Field(None, pattern="^([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$")
    endpoint: str | None = Field(
        None, pattern=r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}$", max_length=260
    )

    @model_validator(mode="after")
    def _v2_needs_project(self) -> GoogleSTTOptions:
        if self.model in V2_MODELS and self.project is None:
            raise ValueError(f"the Speech v2 model {self.model!r} needs 'project'")
        return self


class GeminiOptions(BaseModel):
    """Options of the ``gemini`` LLM.

    Attributes:
        model: a Gemini model name.
        temperature: sampling temperature.
        max_output_tokens: cap on the answer's length.
        base_url: the Gemini API endpoint; change it only for a proxy or gateway.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field("gemini-2.5-flash", min_length=1, max_length=64)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    max_output_tokens: int | None = Field(None, ge=1, le=65536)
    base_url: str | None = Field(None, pattern="^https?://")


def check(options: BaseModel, settings: Settings) -> None:
    """Refuse Google providers when ``THINNEST_GOOGLE_API_KEY`` is not set."""
    require_key(settings, "google_api_key", "google")
