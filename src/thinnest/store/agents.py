"""Agents of an owner: create, read, update, delete; names are unique per owner."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from thinnest.contracts.agent import AgentConfig
from thinnest.errors import ConflictError, NotFoundError
from thinnest.store.models import Agent


def create_agent(db: Session, owner_id: str, config: AgentConfig) -> Agent:
    agent = Agent(owner_id=owner_id, name=config.name, config=config.model_dump(mode="json"))
    db.add(agent)
    _flush_unique(db, config.name)
    return agent


def config_of(agent: Agent) -> AgentConfig:
    """The agent's config as the model it was saved from."""
    return AgentConfig.model_validate(agent.config)


def get_agent(db: Session, owner_id: str, agent_id: str) -> Agent:
    """The owner's agent by id or name; another owner's agent is 'not found', like no agent."""
    agent = db.scalars(
        select(Agent).where(
            Agent.owner_id == owner_id, (Agent.id == agent_id) | (Agent.name == agent_id)
        )
    ).first()
    if agent is None:
        raise NotFoundError(
            f"agent {agent_id!r} not found", code="agent_not_found", field="agent_id"
        )
    return agent


def list_agents(db: Session, owner_id: str) -> list[Agent]:
    return list(db.scalars(select(Agent).where(Agent.owner_id == owner_id).order_by(Agent.name)))


def update_agent(db: Session, agent: Agent, config: AgentConfig) -> Agent:
    agent.name = config.name
    agent.config = config.model_dump(mode="json")
    _flush_unique(db, config.name)
    return agent


def delete_agent(db: Session, agent: Agent) -> None:
    db.delete(agent)
    db.flush()


def _flush_unique(db: Session, name: str) -> None:
    try:
        db.flush()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError(
            f"an agent named {name!r} exists already", code="agent_exists", field="name"
        ) from exc
