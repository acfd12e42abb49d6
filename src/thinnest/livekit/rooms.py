"""Rooms and agent dispatch on the LiveKit server, with LiveKit failures as ``UnavailableError``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from livekit import api
from thinnest.config import Settings
from thinnest.errors import UnavailableError
from thinnest.log import logger

log = logger.getChild("livekit")


class LiveKitService:
    """One LiveKit API client per process; every call bounded by ``settings.livekit_timeout``."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._api: api.LiveKitAPI | None = None

    def _client(self) -> api.LiveKitAPI:
        if self._api is None:
            key, secret = self._settings.livekit_credentials()
            self._api = api.LiveKitAPI(
                self._settings.livekit_url,
                key,
                secret,
                timeout=aiohttp.ClientTimeout(total=self._settings.livekit_timeout),
                failover=False,
            )
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, self._settings.livekit_timeout)
        except (aiohttp.ClientError, OSError, TimeoutError, api.TwirpError) as exc:
            log.warning("LiveKit %s failed: %r", what, exc)
            raise UnavailableError(
                f"LiveKit server at {self._settings.livekit_url} is not reachable ({what} failed); "
                "try again shortly",
                code="livekit_unavailable",
            ) from exc

    async def create_session_room(self, room: str, dispatch_metadata: dict[str, Any]) -> str:
        """Create ``room`` and an explicit dispatch of the voice engine into it.

        Returns:
            The dispatch id.
        """
        client = self._client()
        await self._call(
            "create_room",
            client.room.create_room(
                api.CreateRoomRequest(
                    name=room,
                    empty_timeout=self._settings.room_empty_timeout,
                    departure_timeout=self._settings.room_departure_timeout,
                )
            ),
        )
        dispatch = await self._call(
            "create_dispatch",
            client.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=self._settings.agent_name,
                    room=room,
                    metadata=json.dumps(dispatch_metadata, separators=(",", ":")),
                )
            ),
        )
        return str(dispatch.id)

    async def delete_room(self, room: str) -> None:
        """Close ``room`` (disconnecting everyone); a room that is gone already is fine."""
        try:
            await self._call(
                "delete_room", self._client().room.delete_room(api.DeleteRoomRequest(room=room))
            )
        except UnavailableError as exc:
            cause = exc.__cause__
            if isinstance(cause, api.TwirpError) and cause.code == api.TwirpErrorCode.NOT_FOUND:
                return
            raise

    async def list_dispatches(self, room: str) -> list[Any]:
        return list(
            await self._call("list_dispatch", self._client().agent_dispatch.list_dispatch(room))
        )

    async def list_participants(self, room: str) -> list[Any]:
        resp = await self._call(
            "list_participants",
            self._client().room.list_participants(api.ListParticipantsRequest(room=room)),
        )
        return list(resp.participants)

    async def send_data(
        self, room: str, payload: bytes, *, topic: str, to: list[str] | None = None
    ) -> None:
        """Send a reliable data packet into ``room`` from the server."""
        await self._call(
            "send_data",
            self._client().room.send_data(
                api.SendDataRequest(
                    room=room,
                    data=payload,
                    kind=api.DataPacket.Kind.RELIABLE,
                    topic=topic,
                    destination_identities=to or [],
                )
            ),
        )

    async def existing_rooms(self, names: list[str]) -> set[str]:
        """Which of ``names`` are open rooms on the server."""
        resp = await self._call(
            "list_rooms", self._client().room.list_rooms(api.ListRoomsRequest(names=names))
        )
        return {r.name for r in resp.rooms}

    def webhook_receiver(self) -> api.WebhookReceiver:
        key, secret = self._settings.livekit_credentials()
        return api.WebhookReceiver(api.TokenVerifier(key, secret))

    async def ping(self) -> None:
        """Raise :class:`UnavailableError` unless the LiveKit server answers an API call."""
        await self._call(
            "list_rooms",
            self._client().room.list_rooms(api.ListRoomsRequest(names=["thinnest-readyz"])),
        )
