"""Webhooks of the caller's owner: endpoints (create: the signing secret shown once; list,
read, change, delete), a test event, and each endpoint's delivery log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import AnyHttpUrl, Field

from thinnest.api.deps import CurrentKey, DbSession, SettingsDep
from thinnest.api.errors import ERROR_RESPONSES
from thinnest.api.schemas import (
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookPatch,
    WebhookSaved,
)
from thinnest.config import Settings
from thinnest.contracts import jsonvalue
from thinnest.contracts.values import StrictModel
from thinnest.errors import ValidationError
from thinnest.services.destinations import refusal_for
from thinnest.store import webhooks
from thinnest.store.models import WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=ERROR_RESPONSES)


def _checked_url(url: AnyHttpUrl) -> str:
    if url.username or url.password:
        raise ValidationError(
            "credentials in the URL are not supported: verify the signature instead",
            field="url",
        )
    text = str(url)
    if len(text) > 2000:  # an international host name grows when it is spelt in ASCII
        raise ValidationError("the URL is longer than 2000 characters", field="url")
    return text


def _warnings(row: WebhookEndpoint, settings: Settings) -> list[str]:
    host = AnyHttpUrl(row.url).host or ""
    problem = refusal_for(host, settings)
    return [] if problem is None else [f"url: {problem}"]


def webhook_out(row: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=row.id,
        url=row.url,
        events=list(row.events),
        description=row.description,
        enabled=row.enabled,
        secret_prefix=row.secret[:10],
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_out(row: WebhookDelivery) -> DeliveryOut:
    pending = row.status == webhooks.PENDING
    return DeliveryOut(
        id=row.id,
        webhook_id=row.endpoint_id,
        event_type=row.event_type,
        session_id=row.session_id,
        status=row.status,  # type: ignore[arg-type]
        attempts=row.attempts,
        created_at=row.created_at,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=datetime.fromtimestamp(row.due_at, UTC) if pending else None,
        delivered_at=row.delivered_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
    )


@router.post("", status_code=201)
def create_webhook(
    body: WebhookCreate, key: CurrentKey, db: DbSession, settings: SettingsDep
) -> WebhookCreated:
    """Create a webhook endpoint; its signing secret is in this response only."""
    row = webhooks.create_endpoint(
        db,
        key.owner_id,
        url=_checked_url(body.url),
        events=list(body.events),
        description=body.description,
        enabled=body.enabled,
    )
    db.commit()
    return WebhookCreated(
        **webhook_out(row).model_dump(), warnings=_warnings(row, settings), secret=row.secret
    )


@router.get("")
def list_webhooks(key: CurrentKey, db: DbSession) -> list[WebhookOut]:
    """List the owner's webhook endpoints (never their secrets)."""
    return [webhook_out(r) for r in webhooks.list_endpoints(db, key.owner_id)]


@router.get("/{webhook_id}")
def get_webhook(webhook_id: str, key: CurrentKey, db: DbSession) -> WebhookOut:
    """Read one webhook endpoint."""
    return webhook_out(webhooks.get_endpoint(db, webhook_id, key.owner_id))


@router.patch("/{webhook_id}")
def update_webhook(
    webhook_id: str, body: WebhookPatch, key: CurrentKey, db: DbSession, settings: SettingsDep
) -> WebhookSaved:
    """Change a webhook endpoint's URL, events, description or enabled flag."""
    row = webhooks.get_endpoint(db, webhook_id, key.owner_id)
    if body.url is not None:
        row.url = _checked_url(body.url)
    if body.events is not None:
        row.events = list(body.events)
    if body.description is not None:
        row.description = body.description
    if body.enabled is not None:
        row.enabled = body.enabled
    db.commit()
    return WebhookSaved(**webhook_out(row).model_dump(), warnings=_warnings(row, settings))


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: str, key: CurrentKey, db: DbSession) -> Response:
    """Delete a webhook endpoint and its delivery log."""
    webhooks.delete_endpoint(db, webhook_id, key.owner_id)
    db.commit()
    return Response(status_code=204)


@router.post("/{webhook_id}/test", status_code=202)
def send_test(webhook_id: str, key: CurrentKey, db: DbSession, request: Request) -> DeliveryOut:
    """Queue a signed ``webhook.test`` event to the endpoint (sent within a moment)."""
    row = webhooks.enqueue_test(db, webhooks.get_endpoint(db, webhook_id, key.owner_id))
    db.commit()
    _nudge(request)
    return delivery_out(row)


def _nudge(request: Request) -> None:
    """Wake this process's sender: a delivery is due now."""
    nudge = getattr(request.app.state, "webhook_nudge", None)
    if nudge is not None:
        request.app.state.webhook_loop.call_soon_threadsafe(nudge.set)


class Rotation(StrictModel):
    grace_hours: float = Field(
        24.0,
        ge=0,
        le=168,
        description="hours the current secret still signs beside the new one (0: stop now)",
    )


@router.post("/{webhook_id}/rotate-secret")
def rotate_secret(
    webhook_id: str,
    key: CurrentKey,
    db: DbSession,
    settings: SettingsDep,
    body: Rotation | None = None,
) -> WebhookCreated:
    """A new signing secret, shown in this response only. The old one keeps signing beside
    it for ``grace_hours``: deliveries carry both signatures until the receiver has switched."""
    row = webhooks.get_endpoint(db, webhook_id, key.owner_id)
    secret = webhooks.rotate_secret(
        db, row, grace=timedelta(hours=(body or Rotation()).grace_hours)
    )
    db.commit()
    return WebhookCreated(
        **webhook_out(row).model_dump(), warnings=_warnings(row, settings), secret=secret
    )


@router.post("/{webhook_id}/deliveries/{delivery_id}/resend", status_code=202)
def resend_delivery(
    webhook_id: str, delivery_id: str, key: CurrentKey, db: DbSession, request: Request
) -> DeliveryOut:
    """Send a delivery again now (same id and body): after a receiver's outage, or to replay
    an event. One being sent at this moment is left to that attempt."""
    endpoint = webhooks.get_endpoint(db, webhook_id, key.owner_id)
    row = webhooks.get_delivery(db, endpoint, delivery_id)
    webhooks.resend(db, row)
    db.commit()
    _nudge(request)
    return delivery_out(row)


@router.get("/{webhook_id}/deliveries")
def list_deliveries(
    webhook_id: str,
    key: CurrentKey,
    db: DbSession,
    status: Literal["pending", "delivered", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> DeliveryPage:
    """The endpoint's delivery log, newest first."""
    endpoint = webhooks.get_endpoint(db, webhook_id, key.owner_id)
    rows, total = webhooks.list_deliveries(db, endpoint, status=status, limit=limit, offset=offset)
    return DeliveryPage(
        data=[delivery_out(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/{webhook_id}/deliveries/{delivery_id}")
def get_delivery(
    webhook_id: str, delivery_id: str, key: CurrentKey, db: DbSession
) -> DeliveryDetail:
    """One delivery: the body sent, its attempts, the start of the receiver's answer."""
    endpoint = webhooks.get_endpoint(db, webhook_id, key.owner_id)
    row = webhooks.get_delivery(db, endpoint, delivery_id)
    return DeliveryDetail(
        **delivery_out(row).model_dump(),
        payload=None if row.body is None else jsonvalue.loads(row.body),
        response_excerpt=row.response_excerpt,
        attempt_log=list(row.attempt_log or []),
    )
