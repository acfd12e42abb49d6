"""Agents of the caller's owner: create, list, read, update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from thinnest.api.deps import CurrentKey, DbSession, SettingsDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import AgentConfig, AgentOut, AgentPatch
from thinnest.config import Settings
from thinnest.engine.destinations import refusal_for
from thinnest.errors import ValidationError
from thinnest.providers import registry
from thinnest.store import agents
from thinnest.store.models import Agent

router = APIRouter(prefix="/agents", tags=["agents"], responses=ERROR_RESPONSES)


class AgentSaved(AgentOut):
    """The agent as saved, with what may not work as configured."""

    warnings: list[str] = Field(
        default_factory=list,
        description="problems found when saving, such as a tool URL the SSRF guard of this "
        "deployment would refuse at call time; the agent is saved anyway",
    )


def agent_out(agent: Agent) -> AgentOut:
    return AgentOut(
        id=agent.id, created_at=agent.created_at, updated_at=agent.updated_at, **agent.config
    )


def config_warnings(config: AgentConfig, settings: Settings) -> list[str]:
    """What in a valid config will not work here: tool URLs the SSRF guard refuses (judged
    without DNS: address literals and ``localhost``; a name is judged when it is called)."""
    found = []
    for i, tool in enumerate(config.tools):
        problem = refusal_for(tool.url.host or "", settings)
        if problem is not None:
            found.append(f"tools.{i}.url: {tool.name} will not be called: {problem}")
    return found


def agent_saved(agent: Agent, config: AgentConfig, settings: Settings) -> AgentSaved:
    return AgentSaved(**agent_out(agent).model_dump(), warnings=config_warnings(config, settings))


def check_config(config: AgentConfig, settings: Settings) -> dict[str, Any]:
    """Server-side checks a config model cannot do alone; returns the JSON to store."""
    if config.max_duration > settings.max_call_duration:
        raise ValidationError(
            f"max_duration must be at most {settings.max_call_duration} seconds",
            field="max_duration",
        )
    for kind in registry.KINDS:
        choice = getattr(config.providers, kind)
        # An unknown name, bad options or a missing cloud key is refused now, not mid-call.
        registry.validate(kind, choice.name, choice.options, settings=settings)
    return config.model_dump(mode="json")


@router.post("", status_code=201)
def create_agent(
    body: AgentConfig, key: CurrentKey, db: DbSession, settings: SettingsDep
) -> AgentSaved:
    """Create an agent."""
    agent = agents.create_agent(db, key.owner_id, check_config(body, settings))
    db.commit()
    return agent_saved(agent, body, settings)


@router.get("")
def list_agents(key: CurrentKey, db: DbSession) -> list[AgentOut]:
    """List the caller's agents."""
    return [agent_out(a) for a in agents.list_agents(db, key.owner_id)]


@router.get("/{agent_id}")
def get_agent(agent_id: str, key: CurrentKey, db: DbSession) -> AgentOut:
    """Read one agent (by id or name)."""
    return agent_out(agents.get_agent(db, key.owner_id, agent_id))


@router.patch("/{agent_id}")
def update_agent(
    agent_id: str, body: AgentPatch, key: CurrentKey, db: DbSession, settings: SettingsDep
) -> AgentSaved:
    """Change some fields of an agent."""
    agent = agents.get_agent(db, key.owner_id, agent_id)
    merged = {**agent.config, **body.model_dump(exclude_unset=True)}
    try:
        config = AgentConfig.model_validate(merged)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise ValidationError(f"{field}: {err['msg']}", field=field) from exc
    agents.update_agent(db, agent, check_config(config, settings))
    db.commit()
    return agent_saved(agent, config, settings)


@router.delete("/{agent_id}", status_code=204)
def delete_agent(agent_id: str, key: CurrentKey, db: DbSession) -> Response:
    """Delete an agent; its past sessions are kept."""
    agents.delete_agent(db, agents.get_agent(db, key.owner_id, agent_id))
    db.commit()
    return Response(status_code=204)
