"""Sending webhooks: signed, retried with exponential backoff for a bounded time, each once.

Every API process runs :func:`deliverer` (the engine never sends: it only writes outbox rows,
see :mod:`thinnest.store.webhooks`, so a slow receiver cannot delay a call). A round claims
due deliveries (one process wins each claim), sends each in a task of its own through the
tools' SSRF-guarded client, and writes the outcome back. Delivery is at least once: a process
that dies after the receiver got a request and before it wrote the outcome leaves the row to
be sent again when its claim runs out; receivers dedupe on ``webhook-id``.

Signature: Standard Webhooks v1. ``webhook-signature: v1,<base64 HMAC-SHA256(key,
"<webhook-id>.<webhook-timestamp>.<body>")>``, the key being the base64 after ``whsec_``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from thinnest import __version__
from thinnest.config import Settings
from thinnest.contracts import jsonvalue
from thinnest.contracts.events import LATENCY_KEYS
from thinnest.contracts.webhooks import (
    Envelope,
    EventType,
    SessionEnded,
    SessionStarted,
    StageLatency,
    ToolCall,
    ToolFailed,
    Turn,
    WebhookTestData,
)
from thinnest.errors import ThinnestError
from thinnest.log import logger
from thinnest.metrics import WEBHOOK_ATTEMPTS
from thinnest.services.guarded_http import DestinationRefused, guarded_client, ssl_context
from thinnest.store import sessions
from thinnest.store import webhooks as store
from thinnest.store.db import Database
from thinnest.store.models import ToolCall as ToolCallRow

log = logger.getChild("webhooks")

#: Longest wait between two attempts.
MAX_DELAY = 6 * 3600.0
#: How long ``session.ended`` waits for the recording the engine stores after the ending.
RECORDING_WAIT = 30.0
#: Requests in flight to one endpoint from one process: a slow receiver keeps the others'.
PER_ENDPOINT = 2
#: Largest body sent: a longer ``session.ended`` keeps its latest turns (``truncated``).
MAX_BODY_BYTES = 1_000_000
#: Bytes of a receiver's answer that are read (and kept in the delivery log).
EXCERPT_BYTES = 1024
#: The jitter's own generator: the global one is left to the program around it.
_JITTER = random.Random()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` + base64 HMAC-SHA256 of id, timestamp, body."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(
    secret: str, msg_id: str, body: bytes, *, now: float, previous_secret: str | None = None
) -> dict[str, str]:
    """The headers of one attempt; during a secret's rotation, signed with both secrets
    (space-separated, as Standard Webhooks lets a receiver check either)."""
    timestamp = int(now)
    signature = sign(secret, msg_id, timestamp, body)
    if previous_secret:
        signature += " " + sign(previous_secret, msg_id, timestamp, body)
    return {
        "content-type": "application/json",
        "user-agent": f"Thinnest-Webhooks/{__version__}",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def next_delay(attempts: int, base: float, rng: random.Random | None = None) -> float:
    """Seconds before the retry after attempt number ``attempts``: ``base``·4^(attempts-1),
    at most 6 hours, ±10 % jitter (so retries of many deliveries do not come in step)."""
    raw = min(base * 4 ** max(attempts - 1, 0), MAX_DELAY)
    return raw * (rng or _JITTER).uniform(0.9, 1.1)


def latency_summary(latencies: Iterable[Mapping[str, Any]]) -> dict[str, StageLatency]:
    """Each stage's count, mean, median, p95 (nearest rank) and max over the turns that
    measured it, in seconds (3 decimals)."""
    values: dict[str, list[float]] = {}
    for latency in latencies:
        for stage in LATENCY_KEYS.values():
            value = latency.get(stage)
            if isinstance(value, int | float) and not isinstance(value, bool):
                if math.isfinite(value):
                    values.setdefault(stage, []).append(float(value))
    summary = {}
    for stage, numbers in values.items():
        numbers.sort()

        def rank(p: float, numbers: list[float] = numbers) -> float:
            return numbers[max(math.ceil(p * len(numbers)) - 1, 0)]

        summary[stage] = StageLatency(
            count=len(numbers),
            mean=round(sum(numbers) / len(numbers), 3),
            p50=round(rank(0.5), 3),
            p95=round(rank(0.95), 3),
            max=round(numbers[-1], 3),
        )
    return summary


def render(database: Database, claimed: store.Claimed, settings: Settings) -> str | None:
    """The delivery's JSON body, or None while it is not ready (a recording still coming)."""
    data: dict[str, Any]
    with database.session() as db:
        if claimed.event_type == EventType.TEST:
            data = WebhookTestData(
                webhook_id=claimed.endpoint_id, message="a test event from Thinnest"
            ).model_dump(mode="json")
        elif claimed.event_type == EventType.TOOL_FAILED:
            call = db.get(ToolCallRow, int(claimed.subject_id))
            if call is None:
                raise ThinnestError(f"tool call {claimed.subject_id} is gone")
            row = sessions.get_session(db, call.session_id)
            data = ToolFailed(
                session_id=row.id,
                agent_id=row.agent_id,
                tool_call_id=str(call.id),
                name=call.name,
                arguments=call.arguments,
                error=call.error or "",
                duration=call.duration,
                created_at=call.created_at,
            ).model_dump(mode="json")
        else:
            row = sessions.get_session(db, claimed.subject_id)
            if claimed.event_type == EventType.SESSION_STARTED:
                data = SessionStarted(
                    session_id=row.id,
                    agent_id=row.agent_id,
                    status="active",
                    started_at=row.started_at,
                    context=row.context,
                    recording=row.recording,
                    max_duration=row.max_duration,
                ).model_dump(mode="json")
            else:
                waited = time.time() - (row.ended_at.timestamp() if row.ended_at else 0.0)
                if row.recording and row.recording_path is None and waited < RECORDING_WAIT:
                    return None
                url = None
                if row.recording_path:
                    url = f"{settings.resolved_public_base_url}/voice/sessions/{row.id}/recording"
                data = SessionEnded(
                    session_id=row.id,
                    agent_id=row.agent_id,
                    status=row.status,
                    end_reason=row.end_reason,
                    error=row.error,
                    created_at=row.created_at,
                    started_at=row.started_at,
                    ended_at=row.ended_at,
                    duration=row.duration,
                    context=row.context,
                    recording_url=url,
                    transcript=[Turn.model_validate(t, from_attributes=True) for t in row.turns],
                    tool_calls=[
                        ToolCall.model_validate(c, from_attributes=True) for c in row.tool_calls
                    ],
                    latency=latency_summary(t.latency or {} for t in row.turns),
                ).model_dump(mode="json")
    body = _body(claimed, data)
    while len(body.encode()) > MAX_BODY_BYTES and (
        data.get("transcript") or data.get("tool_calls")
    ):
        # A very long call: keep the latest half of its turns (then of its tool calls).
        part = "transcript" if data.get("transcript") else "tool_calls"
        items = data[part]
        data[part] = items[len(items) // 2 :] if len(items) > 1 else []
        data["truncated"] = True
        body = _body(claimed, data)
    return body


def _body(claimed: store.Claimed, data: dict[str, Any]) -> str:
    envelope = Envelope(
        id=claimed.id,
        type=EventType(claimed.event_type),
        created_at=claimed.created_at,
        data=data,
    )
    return jsonvalue.dumps(envelope.model_dump(mode="json"))


def _process_token() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"


async def deliver_one(
    client: httpx.AsyncClient, database: Database, settings: Settings, claimed: store.Claimed
) -> str:
    """Send one claimed delivery once and write the outcome; returns the status it left."""
    if not claimed.enabled:
        await _record(database, settings, claimed, status=store.FAILED, error="endpoint disabled")
        return store.FAILED
    body = claimed.body
    if body is None:
        body = await asyncio.to_thread(render, database, claimed, settings)
        if body is None:
            await asyncio.to_thread(_write, database, store.postpone, claimed, time.time() + 1)
            return store.PENDING
        await asyncio.to_thread(_write, database, store.freeze_body, claimed, body)
    payload = body.encode()
    headers = signed_headers(
        claimed.secret,
        claimed.id,
        payload,
        now=time.time(),
        previous_secret=claimed.previous_secret,
    )
    started = time.monotonic()
    code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    final = False
    try:
        async with (
            asyncio.timeout(settings.webhook_timeout),
            client.stream(
                "POST",
                claimed.url,
                content=payload,
                headers=headers,
                timeout=settings.webhook_timeout,
            ) as resp,
        ):
            code = resp.status_code
            chunks = b""
            async for chunk in resp.aiter_raw():
                chunks += chunk
                if len(chunks) >= EXCERPT_BYTES:
                    break
            excerpt = jsonvalue.clean_text(chunks[:EXCERPT_BYTES].decode("utf-8", "replace"))
    except TimeoutError:
        error = "timeout"
    except httpx.TimeoutException:
        error = "timeout"
    except httpx.HTTPError as exc:
        if isinstance(exc.__cause__, DestinationRefused):
            error = f"address {exc.__cause__.ip} is not public (the SSRF guard refused it)"
            final = True  # the same answer next time: no retry
        else:
            error = f"could not connect: {type(exc).__name__}"
    seconds = round(time.monotonic() - started, 3)
    if error is None and code is not None and not 200 <= code < 300:
        error = f"HTTP {code}"
    status = store.DELIVERED if error is None else store.FAILED if final else store.PENDING
    return await _record(
        database,
        settings,
        claimed,
        status=status,
        error=error,
        code=code,
        excerpt=excerpt,
        seconds=seconds,
    )


async def _record(
    database: Database,
    settings: Settings,
    claimed: store.Claimed,
    *,
    status: str,
    error: str | None,
    code: int | None = None,
    excerpt: str | None = None,
    seconds: float = 0.0,
) -> str:
    now = time.time()
    due_at = now
    if status == store.PENDING:
        due_at = now + next_delay(claimed.attempts, settings.webhook_retry_base)
        if due_at > claimed.created_at.timestamp() + settings.webhook_retry_window:
            status = store.FAILED
    entry = {"at": now, "status_code": code, "error": error, "seconds": seconds}
    done = await asyncio.to_thread(
        _write,
        database,
        store.record,
        claimed,
        status=status,
        due_at=due_at,
        status_code=code,
        error=error,
        excerpt=excerpt,
        attempt_log=[*claimed.attempt_log, entry],
    )
    if not done:
        log.info("webhook %s: the claim ran out; another process has it now", claimed.id)
        return status
    result = {store.DELIVERED: "delivered", store.PENDING: "retry"}.get(status, "failed")
    WEBHOOK_ATTEMPTS.labels(result=result, error=_error_kind(error)).inc()
    if error is not None:
        log.info("webhook %s to %s: %s (%s)", claimed.id, claimed.endpoint_id, error, status)
    return status


def _error_kind(error: str | None) -> str:
    """An attempt's error, as the metrics label it (the texts :func:`deliver_one` writes)."""
    if error is None:
        return "none"
    for prefix, kind in _ERROR_KINDS:
        if error.startswith(prefix):
            return kind
    return "other"


_ERROR_KINDS = (
    ("HTTP ", "status"),
    ("timeout", "timeout"),
    ("could not connect", "connection"),
    ("address ", "refused"),
    ("endpoint disabled", "disabled"),
)


def _write(database: Database, fn: Any, claimed: store.Claimed, *args: Any, **kw: Any) -> bool:
    with database.writing() as db:
        return bool(fn(db, claimed.id, claimed.token, *args, **kw))


def _claim_due(
    database: Database, settings: Settings, token: str, busy: dict[str, int], free: int
) -> list[store.Claimed]:
    """Claim up to ``free`` due deliveries, at most :data:`PER_ENDPOINT` per endpoint."""
    now = time.time()
    with database.session() as db:
        candidates = store.due(db, now=now, limit=free * 4)
    claimed: list[store.Claimed] = []
    taken = dict(busy)
    for delivery_id, endpoint_id in candidates:
        if len(claimed) >= free:
            break
        if taken.get(endpoint_id, 0) >= PER_ENDPOINT:
            continue
        hold = settings.webhook_timeout + 30
        with database.writing() as db:
            got = store.claim(db, delivery_id, f"{token}:{delivery_id[-8:]}", now=now, hold=hold)
        if got is not None:
            claimed.append(got)
            taken[endpoint_id] = taken.get(endpoint_id, 0) + 1
    return claimed


async def deliverer(
    database: Database, settings: Settings, nudge: asyncio.Event | None = None
) -> None:
    """Send due webhook deliveries until cancelled (every API process runs one)."""
    await asyncio.to_thread(ssl_context)  # loading the CA bundle blocks: not on the loop
    token = _process_token()
    nudge = nudge or asyncio.Event()
    in_flight: dict[asyncio.Task[str], str] = {}
    async with guarded_client(settings) as client:
        try:
            while True:
                nudge.clear()  # what sets it from here on (a send done, a test) wakes the wait
                free = settings.webhook_concurrency - len(in_flight)
                if free > 0:
                    busy: dict[str, int] = {}
                    for endpoint_id in in_flight.values():
                        busy[endpoint_id] = busy.get(endpoint_id, 0) + 1
                    try:
                        claimed = await asyncio.to_thread(
                            _claim_due, database, settings, token, busy, free
                        )
                    except ThinnestError as exc:
                        log.info("webhook round skipped: %s", exc)
                        claimed = []
                    except Exception:
                        log.exception("webhook round failed")
                        claimed = []
                    for c in claimed:
                        task = asyncio.create_task(_safe(client, database, settings, c))
                        in_flight[task] = c.endpoint_id
                        task.add_done_callback(in_flight.pop)
                        task.add_done_callback(lambda _task: nudge.set())  # a slot is free
                    if len(claimed) == free:
                        await asyncio.sleep(0)  # more may be due: look again at once
                        continue
                interval = settings.webhook_poll_interval * _JITTER.uniform(0.8, 1.2)
                try:
                    await asyncio.wait_for(nudge.wait(), interval)
                except TimeoutError:
                    pass
        finally:
            for task in list(in_flight):
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)


async def _safe(
    client: httpx.AsyncClient, database: Database, settings: Settings, claimed: store.Claimed
) -> str:
    """:func:`deliver_one`; an event that cannot be made (its session deleted) counts as a
    failed attempt, so the retry window ends it."""
    try:
        return await deliver_one(client, database, settings, claimed)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if isinstance(exc, ThinnestError):
            log.info("webhook %s not sent: %s", claimed.id, exc)
        else:
            log.exception("webhook %s not sent", claimed.id)
        try:
            return await _record(
                database, settings, claimed, status=store.PENDING, error=f"not sent: {exc}"
            )
        except Exception:
            log.exception("webhook %s: its outcome was not written", claimed.id)
            return store.PENDING
