"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from thinnest.api.deps import DatabaseDep, LiveKitDep, SettingsDep
from thinnest.config import Settings
from thinnest.errors import ThinnestError
from thinnest.providers.modelservice import models_status
from thinnest.store import workers
from thinnest.store.db import Database

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _workers(db: Database, settings: Settings) -> int:
    with db.session() as session:
        return len(
            workers.live_workers(
                session, settings.agent_name, within=3 * settings.worker_heartbeat_interval
            )
        )


@router.get("/readyz")
async def readyz(db: DatabaseDep, livekit: LiveKitDep, settings: SettingsDep) -> JSONResponse:
    """The database, the LiveKit server and the model services (where used) are reachable."""
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(db.ping)
        checks["database"] = "ok"
    except ThinnestError as exc:
        checks["database"] = exc.message
    try:
        await livekit.ping()
        checks["livekit"] = "ok"
    except ThinnestError as exc:
        checks["livekit"] = exc.message
    if settings.models_url:
        checks["models"] = await run_in_threadpool(models_status, settings)
    if all(v == "ok" for v in checks.values()):
        live = await run_in_threadpool(_workers, db, settings)
        return JSONResponse({"status": "ready", "checks": checks, "workers": live})
    failed = ", ".join(k for k, v in checks.items() if v != "ok")
    return JSONResponse(
        {
            "status": "unavailable",
            "checks": checks,
            "error": {"code": "not_ready", "message": f"not reachable: {failed}", "field": None},
        },
        status_code=503,
    )
