"""The job store: rows in one table, reached through SQLAlchemy Core (SQLite by default, a Postgres URL in
server mode), the schema kept current by Alembic on open."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from sqlalchemy import Engine, case, create_engine, delete, event, func, insert, or_, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from jobs.schema import ACTIVE_STATES, ENDED_STATES, JOBS, QUEUED, RUNNING, SCHEMA_REVISION

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
TABLE = JOBS
LIST_COLUMNS = [c for c in TABLE.c if c.name not in ("request", "provenance")]
"""What a history page shows: the large JSON columns stay in the database until one job is opened."""
PATH_COLUMNS = (TABLE.c.output_path, TABLE.c.master_path, TABLE.c.input_path)
"""Every column that names a file: retention checks them all before a file goes."""


def sqlite_url(path: Path) -> str:
    return "sqlite:///%s" % path


def _tune_sqlite(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    # WAL: readers never wait for the writer; NORMAL sync: a power cut may lose the last commits, never corrupt.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _conditions(where: Dict[str, Any]) -> List[Any]:
    """column == value for each item; a list or tuple: one of its values; None: the column is NULL."""
    return [TABLE.c[name].in_(list(value)) if isinstance(value, (list, tuple)) else TABLE.c[name].is_(None) if value is None
            else TABLE.c[name] == value for name, value in where.items()]


def schema_revision(engine: Engine) -> Optional[str]:
    try:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no such table: a new database
        return None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a new database, or one an older version of the app made)."""
    if schema_revision(engine) == SCHEMA_REVISION:
        return  # current: no need to load Alembic (a second at start-up on a small machine)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class JobStore:
    def __init__(self, url: str) -> None:
        is_sqlite = url.startswith("sqlite")
        # pre-ping: after a database server restart a pooled connection is found dead before use, not by the caller
        self.engine = create_engine(url, connect_args={"check_same_thread": False} if is_sqlite else {}, pool_pre_ping=not is_sqlite)
        self.is_sqlite = is_sqlite
        if is_sqlite:
            event.listen(self.engine, "connect", _tune_sqlite)
        migrate(self.engine)
        self._write_lock = threading.Lock() if is_sqlite else None
        """SQLite takes one writer at a time: queue them here rather than in its busy loop."""

    def _write(self, statement: Any) -> int:
        if self._write_lock is None:
            with self.engine.begin() as connection:
                return int(connection.execute(statement).rowcount)
        with self._write_lock, self.engine.begin() as connection:
            return int(connection.execute(statement).rowcount)

    def add(self, values: Dict[str, Any]) -> None:
        self._write(insert(TABLE).values(**values))

    def update(self, job_id: str, **values: Any) -> None:
        self._write(update(TABLE).where(TABLE.c.id == job_id).values(**values))

    def move(self, job_id: str, from_states: Sequence[str], **values: Any) -> bool:
        """Change a job only if it is still in one of ``from_states`` (a cancel and a start cannot both win)."""
        return self._write(update(TABLE).where(TABLE.c.id == job_id, TABLE.c.state.in_(from_states)).values(**values)) == 1

    def change(self, job_id: str, where: Dict[str, Any], **values: Any) -> bool:
        """Change a job only while each column in ``where`` holds its value (a list: one of them): a host's lease and a
        front's cancel or requeue cannot both win."""
        return self._write(update(TABLE).where(TABLE.c.id == job_id, *_conditions(where)).values(**values)) == 1

    def get(self, job_id: str) -> Optional[Dict[str, Any]]:
        with self.engine.connect() as connection:
            row = connection.execute(select(TABLE).where(TABLE.c.id == job_id)).first()
        return dict(row._mapping) if row is not None else None

    def in_states(self, states: Iterable[str]) -> List[Dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(TABLE).where(TABLE.c.state.in_(list(states))).order_by(TABLE.c.created_at))
            return [dict(row._mapping) for row in rows]

    def page(self, owner: Optional[str], query: str = "", architecture: str = "", state: str = "", limit: int = 50,
             offset: int = 0) -> List[Dict[str, Any]]:
        """Newest first; ``owner`` None lists everyone's (the operator)."""
        statement = select(*LIST_COLUMNS).order_by(TABLE.c.created_at.desc()).limit(limit).offset(offset)
        if owner is not None:
            statement = statement.where(TABLE.c.owner == owner)
        if architecture:
            statement = statement.where(TABLE.c.architecture == architecture)
        if state:
            statement = statement.where(TABLE.c.state == state)
        if query:
            pattern = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            statement = statement.where(or_(TABLE.c.text.ilike(pattern, escape="\\"), TABLE.c.character.ilike(pattern, escape="\\"),
                                            TABLE.c.id == query))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(statement)]

    def where(self, limit: int = 10000, **equal: Any) -> List[Dict[str, Any]]:
        """Rows (without the large JSON columns) whose columns equal the given values (a list: one of them), oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(*LIST_COLUMNS).where(*_conditions(equal)).order_by(TABLE.c.created_at).limit(limit))
            return [dict(row._mapping) for row in rows]

    def now_sql(self) -> Any:
        """Now, in epoch seconds, by the database's clock: leases are written and expired by one clock, whatever the
        hosts' clocks say."""
        if self.is_sqlite:
            return (func.julianday("now") - 2440587.5) * 86400.0
        return func.extract("epoch", func.now())

    def leases_expired(self) -> List[Dict[str, Any]]:
        """Running jobs whose host stopped renewing its lease (a host that died, or lost the database)."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(*LIST_COLUMNS).where(TABLE.c.state == RUNNING, TABLE.c.lease_until.is_not(None),
                                                                  TABLE.c.lease_until < self.now_sql()))
            return [dict(row._mapping) for row in rows]

    def published_unclaimed(self) -> List[Dict[str, Any]]:
        """Queued jobs handed to the broker that no host has claimed yet."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(TABLE.c.id, TABLE.c.architecture, TABLE.c.published_at, TABLE.c.cancel_requested)
                                      .where(TABLE.c.state == QUEUED, TABLE.c.published_at.is_not(None)))
            return [dict(row._mapping) for row in rows]

    def queued_ahead(self, architecture: str, created_at: float) -> int:
        """Queued jobs of an architecture made before ``created_at`` (a place in line, in one count)."""
        statement = select(func.count()).select_from(TABLE).where(TABLE.c.state == QUEUED, TABLE.c.architecture == architecture,
                                                                  TABLE.c.created_at < created_at)
        with self.engine.connect() as connection:
            return int(connection.execute(statement).scalar_one())

    def running_count(self, architecture: str) -> int:
        statement = select(func.count()).select_from(TABLE).where(TABLE.c.state == RUNNING, TABLE.c.architecture == architecture)
        with self.engine.connect() as connection:
            return int(connection.execute(statement).scalar_one())

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(TABLE)).scalar_one())

    def interrupt_running(self, reason: str, now: float) -> int:
        """After a restart: what was running when the app stopped cannot be finished; say so, keep it for Retry."""
        return self._write(update(TABLE).where(TABLE.c.state == RUNNING).values(state="interrupted", error=reason, finished_at=now))

    def ended_newest_first(self) -> List[Dict[str, Any]]:
        """What retention may remove (never a queued or running job), with what it needs to decide."""
        columns = [TABLE.c.id, TABLE.c.owner, TABLE.c.client, TABLE.c.created_at, TABLE.c.output_bytes, *PATH_COLUMNS]
        with self.engine.connect() as connection:
            rows = connection.execute(select(*columns).where(TABLE.c.state.in_(ENDED_STATES)).order_by(TABLE.c.created_at.desc()))
            return [dict(row._mapping) for row in rows]

    def referenced_paths(self, paths: Sequence[str]) -> Set[str]:
        """Which of these files a job in the store still names, in any of its file columns."""
        wanted = list(paths)
        found: Set[str] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):  # bounded IN lists
                chunk = wanted[start:start + 500]
                for column in PATH_COLUMNS:
                    found.update(row[0] for row in connection.execute(select(column).where(column.in_(chunk))))
        return found

    def client_holdings(self, client: str) -> Tuple[int, int]:
        """(jobs waiting, bytes of kept recordings) of one client: what its quotas count."""
        statement = select(func.coalesce(func.sum(case((TABLE.c.state == QUEUED, 1), else_=0)), 0),
                           func.coalesce(func.sum(case((TABLE.c.input_path.is_not(None), TABLE.c.input_bytes), else_=0)), 0)
                           ).where(TABLE.c.client == client)  # one query on the submit path
        with self.engine.connect() as connection:
            queued, kept = connection.execute(statement).one()
        return int(queued), int(kept)

    def delete(self, job_ids: Sequence[str]) -> int:
        if not job_ids:
            return 0
        return self._write(delete(TABLE).where(TABLE.c.id.in_(list(job_ids)), TABLE.c.state.notin_(ACTIVE_STATES)))

    def close(self) -> None:
        self.engine.dispose()
