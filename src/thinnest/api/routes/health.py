"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from thinnest.api.deps import DatabaseDep, LiveKitDep
from thinnest.errors import ThinnestError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(db: DatabaseDep, livekit: LiveKitDep) -> JSONResponse:
    """The database and the LiveKit server are reachable."""
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
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ready", "checks": checks})
    failed = ", ".join(k for k, v in checks.items() if v != "ok")
    return JSONResponse(
        {
            "status": "unavailable",
            "checks": checks,
            "error": {"code": "not_ready", "message": f"not reachable: {failed}", "field": None},
        },
        status_code=503,
    )
