"""Leases: a job that exactly one of many processes runs (the lost-session backstop of
several API processes). The holder renews its lease each round; one that stops (crashed,
stopped, cut off) loses it when it expires and another process takes it over."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from thinnest.store.models import Lease
from thinnest.store.upsert import insert


def acquire(db: Session, name: str, holder: str, *, ttl: float, now: float) -> bool:
    """Take or renew lease ``name`` for ``ttl`` seconds from ``now`` (Unix seconds): True
    if ``holder`` has it now, False while another holder's lease runs."""
    table = Lease.__table__
    expires = now + ttl
    stmt = (
        insert(db, table)
        .values(name=name, holder=holder, expires_at=expires)
        .on_conflict_do_update(
            index_elements=[table.c.name],
            set_={"holder": holder, "expires_at": expires},
            where=(table.c.expires_at < now) | (table.c.holder == holder),
        )
    )
    return db.execute(stmt.returning(table.c.name)).first() is not None


def release(db: Session, name: str, holder: str) -> None:
    """Give lease ``name`` up if ``holder`` has it: another process takes it at once."""
    db.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


def holder(db: Session, name: str, *, now: float) -> str | None:
    """Who holds lease ``name`` (None when nobody, or its lease ran out)."""
    row = db.scalars(select(Lease).where(Lease.name == name)).first()
    return row.holder if row is not None and row.expires_at >= now else None
