"""Worker heartbeats: who is alive to take calls for an agent name, and how many more."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from thinnest.contracts.session import OPEN_STATUSES
from thinnest.store.models import CallSession, Worker, utcnow


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


def live_workers(
    db: Session, agent_name: str, *, within: float, lock: bool = False
) -> list[Worker]:
    """Workers for ``agent_name`` heard from in the last ``within`` seconds. With ``lock``,
    their rows stay locked until ``db`` commits (PostgreSQL; SQLite's one writer serialises a
    transaction that has written already), so two starts cannot both take the last slot."""
    since = utcnow() - timedelta(seconds=within)
    stmt = select(Worker).where(Worker.agent_name == agent_name, Worker.last_seen >= since)
    if lock:
        stmt = stmt.order_by(Worker.id).with_for_update()
    return list(db.scalars(stmt))


def models_usable(worker: Worker) -> bool:
    """Whether the worker's calls have their models: in its processes (``""``), or in model
    services that answered its last look (``"ok"``)."""
    return worker.models_status in ("", "ok")


#: How long a dispatched session may wait for a worker to take it. Younger sessions that no
#: worker reports holding are counted as taking a slot; older ones no worker wanted.
DISPATCH_WINDOW = timedelta(seconds=15)


def free_slots(workers: list[Worker], db: Session) -> int:
    """Calls the ``workers`` can still take: each one's free slots as it last reported them
    (``max_jobs - active_jobs``; a worker reports within a fraction of a second of a change),
    less the sessions started in the last :data:`DISPATCH_WINDOW` that no worker reports
    holding yet (dispatched, on their way to a worker)."""
    workers = [w for w in workers if models_usable(w)]
    if not workers:
        return 0
    free = sum(max(0, w.max_jobs - w.active_jobs) for w in workers)
    # Held by any worker, of this agent name or another (one database, several pools).
    held = {sid for ids in db.scalars(select(Worker.session_ids)) for sid in ids or []}
    young = db.scalars(
        select(CallSession.id).where(
            CallSession.status.in_(OPEN_STATUSES),
            CallSession.created_at > utcnow() - DISPATCH_WINDOW,
        )
    )
    return free - sum(1 for sid in young if sid not in held)
