"""Worker heartbeats: who is alive to take calls for an agent name."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from thinnest.store.models import Worker, utcnow


def heartbeat(db: Session, worker_id: str, **fields: object) -> None:
    """Insert or refresh a worker's row (``last_seen`` = now)."""
    row = db.get(Worker, worker_id)
    if row is None:
        row = Worker(id=worker_id)
        db.add(row)
    for name, value in fields.items():
        setattr(row, name, value)
    row.last_seen = utcnow()


def forget(db: Session, worker_id: str) -> None:
    db.execute(delete(Worker).where(Worker.id == worker_id))


def live_workers(db: Session, agent_name: str, *, within: float) -> list[Worker]:
    """Workers for ``agent_name`` heard from in the last ``within`` seconds."""
    since = utcnow() - timedelta(seconds=within)
    return list(
        db.scalars(select(Worker).where(Worker.agent_name == agent_name, Worker.last_seen >= since))
    )
