"""Per-key rate limits shared by every API process: the generic cell rate algorithm (GCRA),
one row per key, taken in one statement.

A key of ``per_minute`` may start ``per_minute`` calls at once and then one every
``60 / per_minute`` seconds, like a token bucket of that size refilled continuously. The row
holds the time at which the bucket would be full again (``tat``); a call is allowed when
taking it leaves ``tat`` at most a minute ahead. The upsert's row lock (PostgreSQL) or the one
writer (SQLite) makes two processes' takes of one key happen one after the other.
"""

from __future__ import annotations

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from thinnest.store.models import RateLimit
from thinnest.store.upsert import greatest, insert

#: What a full bucket holds, in seconds of the key's rate: ``per_minute`` calls.
WINDOW = 60.0


def take(db: Session, key: str, per_minute: int, *, now: float) -> float:
    """Take one call of ``key``'s ``per_minute``: 0.0 if taken, else the seconds until one
    can be (nothing taken). ``now`` is Unix seconds (the API hosts' clocks agree, NTP)."""
    interval = WINDOW / per_minute
    table = RateLimit.__table__
    after = greatest(db, table.c.tat, literal(now)) + interval
    stmt = (
        insert(db, table)
        .values(key=key, tat=now + interval)
        .on_conflict_do_update(
            index_elements=[table.c.key], set_={"tat": after}, where=after - now <= WINDOW
        )
    )
    if db.execute(stmt.returning(table.c.key)).first() is not None:
        return 0.0
    tat = db.scalar(select(table.c.tat).where(table.c.key == key)) or now
    return max(0.0, max(tat, now) + interval - now - WINDOW)
