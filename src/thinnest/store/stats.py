"""An owner's calls summed over a window: per hour, per agent (voice-to-voice latency),
error and no-show rates, and what is running now. The console's overview reads it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from thinnest.contracts.session import EndReason, SessionStatus
from thinnest.store.models import Agent, CallSession, TranscriptTurn, utcnow

#: The most turns read for the latency figures of one window (the newest ones).
MAX_TURNS = 20_000
#: Statuses counted as a failed call: it broke while it ran, or never started.
FAILED_STATUSES = (SessionStatus.ERROR, SessionStatus.FAILED)


@dataclass
class HourCount:
    hour: datetime
    calls: int = 0
    failed: int = 0


@dataclass
class AgentStats:
    agent_id: str
    name: str
    calls: int = 0
    turns: int = 0
    v2v_p50: float | None = None
    v2v_p95: float | None = None
    samples: list[float] = field(default_factory=list, repr=False)


@dataclass
class Overview:
    since: datetime
    until: datetime
    hours: list[HourCount]
    agents: list[AgentStats]
    calls: int
    errors: int
    no_shows: int
    active_calls: int


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values``, nearest rank; ``None`` for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def overview(db: Session, owner_id: str, *, hours: int) -> Overview:
    until = utcnow()
    since = until - timedelta(hours=hours)
    start_hour = since.replace(minute=0, second=0, microsecond=0)
    buckets = [HourCount(start_hour + timedelta(hours=i)) for i in range(hours + 1)]
    in_window = (
        CallSession.owner_id == owner_id,
        CallSession.created_at >= since,
        CallSession.created_at < until,
    )
    agents: dict[str, AgentStats] = {}
    calls = errors = no_shows = 0
    rows = db.execute(
        select(
            CallSession.created_at,
            CallSession.status,
            CallSession.end_reason,
            CallSession.agent_id,
            CallSession.agent_config,
        ).where(*in_window)
    )
    for created_at, status, end_reason, agent_id, config in rows:
        calls += 1
        failed = status in FAILED_STATUSES
        errors += failed
        no_shows += end_reason == EndReason.NO_SHOW
        index = int((created_at - start_hour) // timedelta(hours=1))
        bucket = buckets[min(max(index, 0), len(buckets) - 1)]
        bucket.calls += 1
        bucket.failed += failed
        stats = agents.get(agent_id)
        if stats is None:
            name = str((config or {}).get("name") or agent_id)
            stats = agents[agent_id] = AgentStats(agent_id, name)
        stats.calls += 1
    turns = db.execute(
        select(CallSession.agent_id, TranscriptTurn.latency)
        .join(CallSession, CallSession.id == TranscriptTurn.session_id)
        .where(*in_window, TranscriptTurn.role == "agent")
        .order_by(TranscriptTurn.id.desc())
        .limit(MAX_TURNS)
    )
    for agent_id, latency in turns:
        value = _seconds((latency or {}).get("voice_to_voice"))
        stats = agents.get(agent_id)
        if stats is not None and value is not None:
            stats.turns += 1
            stats.samples.append(value)
    current = {
        a.id: a.name
        for a in db.scalars(select(Agent).where(Agent.owner_id == owner_id, Agent.id.in_(agents)))
    }
    for stats in agents.values():
        stats.name = current.get(stats.agent_id, stats.name)
        stats.v2v_p50 = percentile(stats.samples, 0.5)
        stats.v2v_p95 = percentile(stats.samples, 0.95)
    active = db.scalar(
        select(func.count())
        .select_from(CallSession)
        .where(CallSession.owner_id == owner_id, CallSession.status == SessionStatus.ACTIVE)
    )
    return Overview(
        since=since,
        until=until,
        hours=buckets,
        agents=sorted(agents.values(), key=lambda a: (-a.calls, a.name)),
        calls=calls,
        errors=errors,
        no_shows=no_shows,
        active_calls=active or 0,
    )


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None
