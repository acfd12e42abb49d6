"""First-run setup shared by ``thinnest dev`` and the tests: a default owner, key and agent."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from thinnest.config import DEV_CREDENTIALS_FILE, Settings
from thinnest.contracts.agent import AgentConfig
from thinnest.errors import AuthError, NotFoundError
from thinnest.livekit.devserver import generate_credentials
from thinnest.store import agents, keys
from thinnest.store.db import Database

DEFAULT_OWNER = "default"
DEFAULT_AGENT = "default"


@dataclass(frozen=True)
class DevIdentity:
    """What a developer needs to call the local stack.

    Attributes:
        api_key: a secret API key of the default owner (plaintext, dev only).
        agent_id: the default agent's id.
        livekit_api_key / livekit_api_secret: the dev LiveKit server's credentials.
    """

    api_key: str
    agent_id: str
    livekit_api_key: str
    livekit_api_secret: str


def _write_private(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    tmp.replace(path)


def ensure_dev_identity(settings: Settings, database: Database) -> DevIdentity:
    """Create (first run) or reuse (later runs) the dev credentials, key and default agent.

    The plaintext key is kept in ``<data_dir>/dev-credentials.json`` (mode 0600) so later runs
    can print it again; the database still stores only its hash.
    """
    creds = settings.dev_credentials()
    if not creds.get("livekit_api_key") or not creds.get("livekit_api_secret"):
        creds["livekit_api_key"], creds["livekit_api_secret"] = generate_credentials()
    database.migrate()
    with database.session() as db:
        owner = keys.get_or_create_owner(db, DEFAULT_OWNER)
        try:
            keys.authenticate(db, creds.get("api_key"))
        except AuthError:
            _row, creds["api_key"] = keys.create_key(db, owner, name="dev")
        try:
            agent = agents.get_agent(db, owner.id, DEFAULT_AGENT)
        except NotFoundError:
            config = AgentConfig(name=DEFAULT_AGENT, max_duration=settings.default_max_duration)
            agent = agents.create_agent(db, owner.id, config)
        creds["agent_id"] = agent.id
    _write_private(settings.data_dir / DEV_CREDENTIALS_FILE, creds)
    return DevIdentity(
        api_key=creds["api_key"],
        agent_id=creds["agent_id"],
        livekit_api_key=creds["livekit_api_key"],
        livekit_api_secret=creds["livekit_api_secret"],
    )
