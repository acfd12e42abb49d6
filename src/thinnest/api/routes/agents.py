"""Agents of the caller's owner: create, list, read, update, delete."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import Field

from thinnest.api.deps import CurrentKey, DbSession, SettingsDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import AgentOut, AgentPatch
from thinnest.config import Settings
from thinnest.contracts.agent import AgentConfig
from thinnest.services import agents as agent_service
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


def agent_saved(agent: Agent, config: AgentConfig, settings: Settings) -> AgentSaved:
    return AgentSaved(
        **agent_out(agent).model_dump(), warnings=agent_service.warnings(config, settings)
    )


@router.post("", status_code=201)
def create_agent(
    body: AgentConfig, key: CurrentKey, db: DbSession, settings: SettingsDep
) -> AgentSaved:
    """Create an agent."""
    config = agent_service.checked(body, settings)
    agent = agents.create_agent(db, key.owner_id, config)
    db.commit()
    return agent_saved(agent, config, settings)


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
    changes = body.model_dump(exclude_unset=True)
    config = agent_service.checked(agent_service.merged(agents.config_of(agent), changes), settings)
    agents.update_agent(db, agent, config)
    db.commit()
    return agent_saved(agent, config, settings)


@router.delete("/{agent_id}", status_code=204)
def delete_agent(agent_id: str, key: CurrentKey, db: DbSession) -> Response:
    """Delete an agent; its past sessions are kept."""
    agents.delete_agent(db, agents.get_agent(db, key.owner_id, agent_id))
    db.commit()
    return Response(status_code=204)
