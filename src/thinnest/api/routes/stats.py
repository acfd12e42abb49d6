"""``GET /stats/overview``: the caller's calls over the last hours, for the console's overview."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from thinnest.api.deps import CurrentKey, DbSession, SettingsDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.store import stats, workers

router = APIRouter(prefix="/stats", tags=["stats"], responses=ERROR_RESPONSES)


class HourOut(BaseModel):
    hour: datetime
    calls: int
    failed: int


class AgentStatsOut(BaseModel):
    agent_id: str
    name: str
    calls: int
    turns: int = Field(description="agent turns with a voice-to-voice figure")
    v2v_p50: float | None = Field(description="median voice-to-voice latency, seconds")
    v2v_p95: float | None = Field(description="95th percentile voice-to-voice latency, seconds")


class CapacityOut(BaseModel):
    workers: int = Field(description="voice engine workers alive now (all owners share them)")
    active_jobs: int
    max_jobs: int


class OverviewOut(BaseModel):
    since: datetime
    until: datetime
    hours: list[HourOut]
    agents: list[AgentStatsOut]
    calls: int
    errors: int = Field(description="calls that failed (status error or failed)")
    no_shows: int = Field(description="calls the caller never joined")
    error_rate: float | None
    no_show_rate: float | None
    active_calls: int
    capacity: CapacityOut


@router.get("/overview")
def get_overview(
    key: CurrentKey,
    db: DbSession,
    settings: SettingsDep,
    hours: Annotated[int, Query(ge=1, le=720)] = 24,
) -> OverviewOut:
    """Calls per hour, voice-to-voice latency per agent, error and no-show rates, and the
    calls running now against the workers' capacity, over the last ``hours``."""
    view = stats.overview(db, key.owner_id, hours=hours)
    live = workers.live_workers(
        db, settings.agent_name, within=3 * settings.worker_heartbeat_interval
    )
    return OverviewOut(
        since=view.since,
        until=view.until,
        hours=[HourOut(hour=h.hour, calls=h.calls, failed=h.failed) for h in view.hours],
        agents=[
            AgentStatsOut(
                agent_id=a.agent_id,
                name=a.name,
                calls=a.calls,
                turns=a.turns,
                v2v_p50=a.v2v_p50,
                v2v_p95=a.v2v_p95,
            )
            for a in view.agents
        ],
        calls=view.calls,
        errors=view.errors,
        no_shows=view.no_shows,
        error_rate=view.errors / view.calls if view.calls else None,
        no_show_rate=view.no_shows / view.calls if view.calls else None,
        active_calls=view.active_calls,
        capacity=CapacityOut(
            workers=len(live),
            active_jobs=sum(w.active_jobs for w in live),
            max_jobs=sum(w.max_jobs for w in live),
        ),
    )
