"""What the API hands the voice engine with each dispatch (JSON in the dispatch metadata)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from thinnest.api.schemas import AgentConfig


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
