"""What the API hands the voice engine with each dispatch (JSON in the dispatch metadata),
and who is who in a session's room."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from thinnest.contracts import jsonvalue
from thinnest.contracts.agent import AgentConfig

#: The identity the caller's client joins the room with (the token says so).
USER_IDENTITY = "user"


class DispatchMetadata(BaseModel):
    """One session's job description.

    Attributes:
        session_id: the session (and room) name.
        agent_id: the agent's id.
        agent: the agent's config as it was when the session started.
        context: the caller's context, for the prompt and tools.
        recording: whether to record the call.
        max_duration: seconds before the agent closes the call.
    """

    session_id: str
    agent_id: str
    agent: AgentConfig
    context: dict[str, Any] = Field(default_factory=dict)
    recording: bool = False
    max_duration: int = Field(gt=0)

    @classmethod
    def parse(cls, text: str | bytes) -> DispatchMetadata:
        """Read a job's metadata. A lone surrogate (``"\\ud800"``) or nesting deeper than
        pydantic's JSON parser takes, from an API older than the edge's checks, is repaired
        (see :mod:`thinnest.contracts.jsonvalue`) instead of failing the call."""
        return cls.model_validate(jsonvalue.loads(text))
