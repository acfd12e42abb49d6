"""Statements that change a row only if it is as expected, for the backend a session is
bound to: ``INSERT … ON CONFLICT DO UPDATE … WHERE`` (SQLite and PostgreSQL both speak it;
SQLAlchemy spells it per dialect; it says what it changed with ``RETURNING``) and the count of
rows an UPDATE changed."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, FromClause, Result, Table, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import Function


def insert(db: Session, table: FromClause) -> Any:
    """The dialect's ``insert`` of ``table`` (it has ``on_conflict_do_update``)."""
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(cast(Table, table))


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed. (Not an upsert's: psycopg counts one whose
    ``WHERE`` was false as a row; ask the upsert to ``RETURNING`` its key instead.)"""
    return cast(CursorResult[Any], result).rowcount


def greatest(db: Session, *values: Any) -> Function[Any]:
    """The largest of ``values``: PostgreSQL's ``greatest``, SQLite's many-argument ``max``."""
    if db.get_bind().dialect.name == "postgresql":
        return func.greatest(*values)
    return func.max(*values)
