"""The reference backends' SQLite database: schema, connection, and the local clock.

Reference data that depends on the date (bills, outages, applications) is stored relative to
"today"/"now" and turned into absolute times when read, so the data is always current without
reseeding. Mutable state (queues, tickets) is stored with absolute times.
"""
from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

LOCAL_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The current local time (+08:00)."""
    return datetime.now(LOCAL_TZ)


def iso(moment: Optional[datetime]) -> Optional[str]:
    """ISO-8601 with the +08:00 offset, to the second."""
    return None if moment is None else moment.astimezone(LOCAL_TZ).isoformat(timespec="seconds")


SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_number TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    customer_type TEXT NOT NULL CHECK (customer_type IN ('residential', 'commercial', 'enterprise')),
    address TEXT NOT NULL,
    district TEXT NOT NULL,
    street TEXT NOT NULL,
    community TEXT NOT NULL,
    tariff_code TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'closed')),
    phone TEXT NOT NULL,
    base_kwh INTEGER NOT NULL,          -- typical monthly consumption
    peak_percent INTEGER NOT NULL,      -- share of energy in the peak period (time-of-use tariffs)
    payer TEXT NOT NULL CHECK (payer IN ('prompt', 'late', 'overdue', 'prepaid')),
    unpaid_bills INTEGER NOT NULL DEFAULT 0,  -- 'overdue' payers: how many latest bills are unpaid
    credit_fen INTEGER NOT NULL DEFAULT 0     -- prepaid credit in fen
);
CREATE INDEX IF NOT EXISTS accounts_place ON accounts (district, street, community);
-- Keyset pages of an area's accounts in 户号 order (the broadcasts' audience of an outage).
CREATE INDEX IF NOT EXISTS accounts_place_number ON accounts (district, street, community, account_number);

CREATE TABLE IF NOT EXISTS halls (
    hall_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    district TEXT NOT NULL,
    street TEXT NOT NULL,
    weekday_hours TEXT,                 -- "08:30-17:30", NULL = closed on weekdays
    weekend_hours TEXT,                 -- NULL = closed at weekends
    business_types TEXT NOT NULL,       -- JSON list of business type codes
    sort_order INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS queue_lines (
    hall_id TEXT NOT NULL,
    day TEXT NOT NULL,
    business_type TEXT NOT NULL,
    issued INTEGER NOT NULL,            -- last sequence number handed out today
    served INTEGER NOT NULL,            -- sequence number at the counter (issued + 1 = free)
    updated_at TEXT NOT NULL,
    PRIMARY KEY (hall_id, day, business_type)
);

CREATE TABLE IF NOT EXISTS queue_tickets (
    hall_id TEXT NOT NULL,
    day TEXT NOT NULL,
    ticket_number TEXT NOT NULL,
    business_type TEXT NOT NULL,
    seq INTEGER NOT NULL,
    holder TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    PRIMARY KEY (hall_id, day, ticket_number)
);
CREATE INDEX IF NOT EXISTS queue_tickets_holder ON queue_tickets (holder, day);

CREATE TABLE IF NOT EXISTS outages (
    outage_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('planned', 'fault')),
    district TEXT NOT NULL,
    street TEXT NOT NULL,
    community TEXT NOT NULL,
    affected_area TEXT NOT NULL,
    reason TEXT NOT NULL,
    day_offset INTEGER,                 -- planned: days from today
    start_clock TEXT,                   -- planned: local "HH:MM"
    end_clock TEXT,
    start_offset_min INTEGER,           -- fault: minutes from the current hour
    end_offset_min INTEGER,             -- fault: expected restoration
    restored_offset_min INTEGER,        -- fault: restored at (NULL = not yet)
    revision INTEGER NOT NULL DEFAULT 1,  -- 1 + how many times the window was changed
    changed_offset_min INTEGER,         -- planned: window last changed, minutes from the current hour
    previous_day_offset INTEGER,        -- planned: the window before that change
    previous_start_clock TEXT,
    previous_end_clock TEXT
);

CREATE TABLE IF NOT EXISTS applications (
    application_number TEXT PRIMARY KEY,
    account_number TEXT NOT NULL,
    business_type TEXT NOT NULL,
    customer_type TEXT NOT NULL,
    submitted_offset_days INTEGER NOT NULL,   -- days from today (negative)
    submitted_clock TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'cancelled')),
    stages TEXT NOT NULL,               -- JSON [{name, start_offset_days, end_offset_days|null}]
    manager_name TEXT NOT NULL,
    manager_phone TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_account ON applications (account_number);

-- 客户经理制: the customer manager serving a 政企/大客户 account (its hand-offs go to their queue)
CREATE TABLE IF NOT EXISTS customer_managers (
    account_number TEXT PRIMARY KEY,
    manager_id TEXT NOT NULL,
    manager_name TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS tickets (
    ticket_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    category TEXT NOT NULL,
    description TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    promised_by TEXT,
    account_number TEXT,
    conversation_id TEXT NOT NULL,
    contact_phone TEXT,
    address TEXT,
    area TEXT,
    history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_conversation ON tickets (conversation_id);

CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Columns added after the first release: a database created before gets them on start.
ADDED_COLUMNS = {
    "outages": (("revision", "INTEGER NOT NULL DEFAULT 1"), ("changed_offset_min", "INTEGER"),
                ("previous_day_offset", "INTEGER"), ("previous_start_clock", "TEXT"),
                ("previous_end_clock", "TEXT")),
}


class Database:
    """One SQLite connection shared by the process, serialised by a lock.

    Every statement the services run is a short indexed read or a single-row write, so they run
    inline on the event loop; the lock makes a read-modify-write (taking a number) atomic.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.lock = threading.RLock()

    def create_schema(self) -> None:
        with self.lock:
            self.conn.executescript(SCHEMA)
            present = {row["name"] for row in self.conn.execute("PRAGMA table_info(outages)")}
            for column, declaration in ADDED_COLUMNS["outages"]:
                if column not in present:
                    self.conn.execute(f"ALTER TABLE outages ADD COLUMN {column} {declaration}")

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, tuple(params)).fetchall()

    def one(self, sql: str, params: Iterable[Any] = ()) -> Optional[sqlite3.Row]:
        with self.lock:
            return self.conn.execute(sql, tuple(params)).fetchone()

    def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        with self.lock:
            self.conn.execute(sql, tuple(params))

    def transaction(self) -> "_Transaction":
        """``with db.transaction() as conn:`` runs statements atomically (BEGIN IMMEDIATE)."""
        return _Transaction(self)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


class _Transaction:
    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.lock.acquire()
        self.db.conn.execute("BEGIN IMMEDIATE")
        return self.db.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db.lock.release()
