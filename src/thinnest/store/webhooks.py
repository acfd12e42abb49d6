"""Webhook endpoints and the outbox of their deliveries.

A delivery row is written (:func:`enqueue`) in the same transaction as the change it reports,
so an event is queued if and only if its change commits, by whatever process makes it (the
engine included). Only API processes send: each :func:`claim`\\ s a due row with one
conditional UPDATE (the UPDATE first, then the read: on SQLite and PostgreSQL exactly one
claimer wins), and writes the outcome back only while its claim is still its own.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from thinnest.errors import ConflictError, NotFoundError
from thinnest.store.models import WebhookDelivery, WebhookEndpoint, new_id, utcnow
from thinnest.store.upsert import insert, rows_changed

#: Most endpoints an owner may have.
MAX_ENDPOINTS = 20
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
#: Attempts kept in a delivery's ``attempt_log``.
ATTEMPTS_KEPT = 10


def new_secret() -> str:
    """A signing secret in Standard Webhooks' form: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# --- endpoints ---------------------------------------------------------------------------


def create_endpoint(
    db: Session, owner_id: str, *, url: str, events: list[str], description: str, enabled: bool
) -> WebhookEndpoint:
    count = db.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.owner_id == owner_id)
    )
    if (count or 0) >= MAX_ENDPOINTS:
        raise ConflictError(
            f"an owner may have at most {MAX_ENDPOINTS} webhooks: delete one first",
            code="too_many_webhooks",
        )
    row = WebhookEndpoint(
        owner_id=owner_id,
        url=url,
        events=list(events),
        description=description,
        enabled=enabled,
        secret=new_secret(),
    )
    db.add(row)
    db.flush()
    return row


def list_endpoints(db: Session, owner_id: str) -> list[WebhookEndpoint]:
    rows = db.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.owner_id == owner_id)
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list(rows)


def get_endpoint(db: Session, webhook_id: str, owner_id: str) -> WebhookEndpoint:
    """The owner's endpoint; another owner's is 'not found' (its existence is not told)."""
    row = db.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == webhook_id, WebhookEndpoint.owner_id == owner_id
        )
    ).first()
    if row is None:
        raise NotFoundError(
            f"webhook {webhook_id!r} not found", code="webhook_not_found", field="webhook_id"
        )
    return row


def delete_endpoint(db: Session, webhook_id: str, owner_id: str) -> None:
    """Delete the endpoint and its deliveries (pending ones are never sent)."""
    row = get_endpoint(db, webhook_id, owner_id)
    db.delete(row)
    db.flush()


# --- the outbox ----------------------------------------------------------------------------


def enqueue(
    db: Session,
    *,
    owner_id: str,
    event: str,
    subject_id: str,
    session_id: str | None,
    delay: float = 0.0,
) -> int:
    """Queue ``event`` for each of the owner's enabled endpoints that subscribe to it, in the
    caller's transaction; returns how many rows it wrote (an event already queued for an
    endpoint is not queued again)."""
    endpoints = db.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.events).where(
            WebhookEndpoint.owner_id == owner_id, WebhookEndpoint.enabled.is_(True)
        )
    ).all()
    targets = [endpoint_id for endpoint_id, events in endpoints if event in (events or [])]
    if not targets:
        return 0
    now = utcnow()
    due = time.time() + delay
    table = WebhookDelivery.__table__
    rows: list[dict[str, Any]] = [
        {
            "id": new_id("msg"),
            "endpoint_id": endpoint_id,
            "owner_id": owner_id,
            "event_type": event,
            "subject_id": subject_id,
            "session_id": session_id,
            "status": PENDING,
            "attempts": 0,
            "due_at": due,
            "created_at": now,
            "attempt_log": [],
        }
        for endpoint_id in targets
    ]
    stmt = (
        insert(db, table)
        .values(rows)
        .on_conflict_do_nothing(
            index_elements=[table.c.endpoint_id, table.c.event_type, table.c.subject_id]
        )
    )
    return len(db.execute(stmt.returning(table.c.id)).all())


def enqueue_test(db: Session, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a ``webhook.test`` delivery to ``endpoint`` (enabled or not), due now."""
    delivery_id = new_id("msg")
    row = WebhookDelivery(
        id=delivery_id,
        endpoint_id=endpoint.id,
        owner_id=endpoint.owner_id,
        event_type="webhook.test",
        subject_id=delivery_id,
        status=PENDING,
        attempts=0,
        due_at=time.time(),
        attempt_log=[],
    )
    db.add(row)
    db.flush()
    return row


def due(db: Session, *, now: float, limit: int) -> list[tuple[str, str]]:
    """(delivery id, endpoint id) of pending deliveries due by ``now`` and claimed by nobody,
    oldest due first."""
    rows = db.execute(
        select(WebhookDelivery.id, WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.due_at <= now,
            (WebhookDelivery.claimed_until.is_(None)) | (WebhookDelivery.claimed_until < now),
        )
        .order_by(WebhookDelivery.due_at)
        .limit(limit)
    ).all()
    return [(r[0], r[1]) for r in rows]


@dataclass(frozen=True)
class Claimed:
    """A delivery this process may send now, with what sending it needs."""

    id: str
    token: str
    event_type: str
    subject_id: str
    owner_id: str
    body: str | None
    attempts: int
    created_at: datetime
    attempt_log: list[dict[str, Any]]
    endpoint_id: str
    url: str
    secret: str
    enabled: bool
    #: a rotated-out secret still in its grace period: it signs too
    previous_secret: str | None = None


def claim(db: Session, delivery_id: str, token: str, *, now: float, hold: float) -> Claimed | None:
    """Claim a due delivery for ``hold`` seconds; None if another process has it (or it is
    no longer due). The UPDATE comes first: the read after it is protected by its lock."""
    done = db.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.due_at <= now,
            (WebhookDelivery.claimed_until.is_(None)) | (WebhookDelivery.claimed_until < now),
        )
        .values(
            claimed_by=token,
            claimed_until=now + hold,
            attempts=WebhookDelivery.attempts + 1,
            last_attempt_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if rows_changed(done) != 1:
        return None
    row = db.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id == delivery_id)
    ).first()
    if row is None:  # the endpoint was deleted (its deliveries go with it)
        return None
    delivery, endpoint = row
    return Claimed(
        id=delivery.id,
        token=token,
        event_type=delivery.event_type,
        subject_id=delivery.subject_id,
        owner_id=delivery.owner_id,
        body=delivery.body,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        attempt_log=list(delivery.attempt_log or []),
        endpoint_id=endpoint.id,
        url=endpoint.url,
        secret=endpoint.secret,
        enabled=endpoint.enabled,
        previous_secret=_previous_secret(endpoint),
    )


def _previous_secret(endpoint: WebhookEndpoint) -> str | None:
    until = endpoint.previous_secret_until
    if endpoint.previous_secret is None or until is None:
        return None
    return endpoint.previous_secret if until > utcnow() else None


def rotate_secret(db: Session, endpoint: WebhookEndpoint, *, grace: timedelta) -> str:
    """A new signing secret for ``endpoint``; the current one signs beside it for ``grace``
    (none: it stops at once). Returns the new secret (shown once)."""
    endpoint.previous_secret = endpoint.secret if grace > timedelta(0) else None
    endpoint.previous_secret_until = utcnow() + grace if grace > timedelta(0) else None
    endpoint.secret = new_secret()
    return endpoint.secret


def resend(db: Session, delivery: WebhookDelivery) -> None:
    """Send ``delivery`` again now, with the same id and body (a receiver that deduplicates
    on ``webhook-id`` sees one event). One more attempt; a failure is retried as usual while
    the event is within the retry window. A delivery being sent right now is left to that
    attempt, which is the resend."""
    now = time.time()
    if delivery.claimed_until is not None and delivery.claimed_until >= now:
        return
    delivery.status = PENDING
    delivery.due_at = now
    delivery.delivered_at = None


def _mine(delivery_id: str, token: str) -> Any:
    return update(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.claimed_by == token
    )


def freeze_body(db: Session, delivery_id: str, token: str, body: str) -> bool:
    """Keep the body made at the first attempt: every retry sends the same bytes."""
    return rows_changed(db.execute(_mine(delivery_id, token).values(body=body))) == 1


def postpone(db: Session, delivery_id: str, token: str, due_at: float) -> bool:
    """Give the claim up without an attempt (the event is not ready to be sent yet)."""
    stmt = _mine(delivery_id, token).values(
        claimed_by=None,
        claimed_until=None,
        due_at=due_at,
        attempts=WebhookDelivery.attempts - 1,
    )
    return rows_changed(db.execute(stmt)) == 1


def record(
    db: Session,
    delivery_id: str,
    token: str,
    *,
    status: str,
    due_at: float,
    status_code: int | None,
    error: str | None,
    excerpt: str | None,
    attempt_log: list[dict[str, Any]],
) -> bool:
    """Write an attempt's outcome and give the claim up; False (nothing written) if the claim
    ran out and another process has the delivery now."""
    values: dict[str, Any] = {
        "status": status,
        "due_at": due_at,
        "claimed_by": None,
        "claimed_until": None,
        "last_status_code": status_code,
        "last_error": error,
        "response_excerpt": excerpt,
        "attempt_log": attempt_log[-ATTEMPTS_KEPT:],
    }
    if status == DELIVERED:
        values["delivered_at"] = utcnow()
    return rows_changed(db.execute(_mine(delivery_id, token).values(**values))) == 1


# --- the delivery log ----------------------------------------------------------------------


def list_deliveries(
    db: Session,
    endpoint: WebhookEndpoint,
    *,
    status: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[WebhookDelivery], int]:
    """A page of the endpoint's deliveries, newest first, and the total that match."""
    where = [WebhookDelivery.endpoint_id == endpoint.id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    total = db.scalar(select(func.count()).select_from(WebhookDelivery).where(*where)) or 0
    rows = db.scalars(
        select(WebhookDelivery)
        .where(*where)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def get_delivery(db: Session, endpoint: WebhookEndpoint, delivery_id: str) -> WebhookDelivery:
    row = db.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id
        )
    ).first()
    if row is None:
        raise NotFoundError(
            f"delivery {delivery_id!r} not found", code="delivery_not_found", field="delivery_id"
        )
    return row
