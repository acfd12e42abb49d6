"""The database from the command line: API keys, agents, and a backup of it all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from thinnest.bootstrap import DEFAULT_OWNER
from thinnest.cli.output import err, out
from thinnest.config import Settings, get_settings
from thinnest.errors import ValidationError
from thinnest.store import agents as agents_store
from thinnest.store import keys as keys_store
from thinnest.store.db import Database

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from thinnest.contracts.agent import AgentConfig
    from thinnest.store.models import Agent

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
agents_app = typer.Typer(help="Manage agents.", no_args_is_help=True)

OwnerOpt = Annotated[str, typer.Option("--owner", help="owner (tenant) name")]
AgentArg = Annotated[str, typer.Argument(help="agent id or name")]


def _database(settings: Settings) -> Database:
    db = Database(settings.resolved_database_url)
    db.migrate()
    return db


def backup(
    path: Annotated[Path, typer.Argument(help="file to write the copy to")],
    force: Annotated[bool, typer.Option("--force", help="replace PATH if it exists")] = False,
) -> None:
    """Copy the database to PATH while everything keeps running (SQLite's online backup;
    for PostgreSQL it says how to run pg_dump)."""
    from thinnest.store.backup import backup as backup_database

    result = backup_database(get_settings().resolved_database_url, path, overwrite=force)
    out.print(
        f"backed up {result.tables} tables, {result.bytes} bytes, to {result.path}", markup=False
    )


# --- keys -----------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option("--owner", help="owner (tenant); created if new")],
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    publishable: Annotated[
        bool,
        typer.Option(
            "--publishable",
            help="a key for web pages (the Voice Widget): it only starts sessions with the "
            "--agent(s) it names, from the --origin(s) it names",
        ),
    ] = False,
    agent: Annotated[
        list[str] | None,
        typer.Option("--agent", help="publishable: agent id or name it may start (repeatable)"),
    ] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin", help="publishable: website origin, e.g. https://example.com (repeatable)"
        ),
    ] = None,
    rate_limit: Annotated[
        int | None,
        typer.Option(help="publishable: sessions a minute (default THINNEST_PUBLISHABLE_…)"),
    ] = None,
    max_open_sessions: Annotated[
        int | None,
        typer.Option(
            help="sessions of this key open at once; one more is refused (publishable "
            "default THINNEST_PUBLISHABLE_MAX_OPEN_SESSIONS, secret: no cap)"
        ),
    ] = None,
) -> None:
    """Create an API key; the key is printed once, as the last line."""
    if not publishable and (agent or origin or rate_limit is not None):
        raise ValidationError(
            "--agent, --origin and --rate-limit are for publishable keys: add --publishable",
            field="publishable",
        )
    with _database(get_settings()).session() as db:
        owner_row = keys_store.get_or_create_owner(db, owner)
        if publishable:
            row, plaintext = keys_store.create_publishable_key(
                db,
                owner_row,
                name=name,
                agents_allowed=agent or [],
                origins=origin or [],
                rate_limit_per_minute=rate_limit,
                max_open_sessions=max_open_sessions,
            )
            err.print(
                f"created publishable key {row.id} for owner {owner!r}: agents "
                f"{', '.join(row.allowed_agents)}; origins {', '.join(row.allowed_origins)}",
                markup=False,
            )
        else:
            row, plaintext = keys_store.create_key(
                db, owner_row, name=name, max_open_sessions=max_open_sessions
            )
            err.print(
                f"created key {row.id} for owner {owner!r}; store it now, it is not shown again:",
                markup=False,
            )
    out.print(plaintext)


@keys_app.command("list")
def keys_list(owner: Annotated[str | None, typer.Option(help="only this owner's")] = None) -> None:
    """List API keys (ids and prefixes, never the keys)."""
    with _database(get_settings()).session() as db:
        owner_id = keys_store.get_owner(db, owner).id if owner else None
        table = Table("id", "owner", "kind", "prefix", "name", "created", "revoked")
        for k in keys_store.list_keys(db, owner_id):
            table.add_row(
                k.id,
                escape(k.owner.name),
                k.kind,
                k.prefix + "…",
                escape(k.name),
                k.created_at.isoformat(timespec="seconds"),
                k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "",
            )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="key id or prefix")]) -> None:
    """Revoke an API key."""
    with _database(get_settings()).session() as db:
        row = keys_store.revoke_key(db, key_id)
        out.print(f"revoked {row.id}")


# --- agents ---------------------------------------------------------------------------------
def _agent_config(
    name: str, config_file: Path | None, fields: dict[str, Any], *, llm: str | None = None
) -> AgentConfig:
    from thinnest.services import agents as agent_service

    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = json.loads(config_file.read_text())
        except (OSError, ValueError) as exc:
            raise ValidationError(f"cannot read {config_file}: {exc}", field="config") from exc
    data.update({k: v for k, v in fields.items() if v is not None})
    if llm is not None:
        provider, _, model = llm.partition(":")
        if not provider.strip():
            raise ValidationError(
                "--llm: expected PROVIDER[:MODEL], e.g. openai:gpt-4.1-mini", field="llm"
            )
        choice: dict[str, Any] = {"name": provider.strip()}
        if model.strip():
            choice["options"] = {"model": model.strip()}
        providers = data.get("providers")
        data["providers"] = {**(providers if isinstance(providers, dict) else {}), "llm": choice}
    data["name"] = name
    return agent_service.checked(agent_service.parse(data), get_settings())


@agents_app.command("create")
def agents_create(
    name: Annotated[str, typer.Argument(help="agent name (unique per owner)")],
    owner: OwnerOpt = DEFAULT_OWNER,
    instructions: Annotated[str | None, typer.Option(help="system prompt")] = None,
    greeting: Annotated[str | None, typer.Option(help="first thing the agent says")] = None,
    language: Annotated[str | None, typer.Option(help="language code, e.g. en")] = None,
    max_duration: Annotated[int | None, typer.Option(help="seconds")] = None,
    llm: Annotated[
        str | None,
        typer.Option(
            help="the LLM as PROVIDER[:MODEL], e.g. openai:gpt-4.1-mini (any OpenAI-compatible "
            "endpoint: THINNEST_OPENAI_BASE_URL); default the offline llama"
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file with the full config")] = None,
) -> None:
    """Create an agent; prints its id as the last line."""
    data = _agent_config(
        name,
        config,
        {
            "instructions": instructions,
            "greeting": greeting,
            "language": language,
            "max_duration": max_duration,
        },
        llm=llm,
    )
    with _database(get_settings()).session() as db:
        agent = agents_store.create_agent(db, keys_store.get_or_create_owner(db, owner).id, data)
        out.print(agent.id)


@agents_app.command("list")
def agents_list(owner: OwnerOpt = DEFAULT_OWNER) -> None:
    """List an owner's agents."""
    with _database(get_settings()).session() as db:
        table = Table("id", "name", "language", "max_duration", "tools")
        for a in agents_store.list_agents(db, keys_store.get_owner(db, owner).id):
            agent_config = agents_store.config_of(a)
            table.add_row(
                a.id,
                escape(a.name),
                escape(agent_config.language),
                str(agent_config.max_duration or ""),
                str(len(agent_config.tools)),
            )
    out.print(table)


def _owners_agent(db: Session, owner: str, agent: str) -> Agent:
    return agents_store.get_agent(db, keys_store.get_owner(db, owner).id, agent)


@agents_app.command("show")
def agents_show(agent: AgentArg, owner: OwnerOpt = DEFAULT_OWNER) -> None:
    """Print an agent's config as JSON."""
    with _database(get_settings()).session() as db:
        row = _owners_agent(db, owner, agent)
        out.print_json(data={"id": row.id, **row.config})


@agents_app.command("delete")
def agents_delete(agent: AgentArg, owner: OwnerOpt = DEFAULT_OWNER) -> None:
    """Delete an agent (its sessions are kept)."""
    with _database(get_settings()).session() as db:
        row = _owners_agent(db, owner, agent)
        agents_store.delete_agent(db, row)
        out.print(f"deleted {row.id}")
