"""API keys and their query budgets, in SQLite (standard library only).

A key reads ``pk_<id>_<secret>``; the table keeps the id, a SHA-256 digest of the
secret (never the secret) and the budget. A presented key is looked up by its id and
its digest compared with :func:`hmac.compare_digest` (constant time).

Spending is persisted when an answer is ready, in the same transaction as the answer
itself (``answers``: key, request id, labels), so that:

* a restart neither loses nor forgets spending (the row is committed before the
  answer leaves);
* a retried request (same key, same id) gets the stored answer back and is not
  charged twice, even across a restart, and even when two servers share the database
  (:meth:`KeyStore.charge` finds the other's answer inside its transaction and raises
  :class:`Answered`);
* each answer keeps its payload's digest: the same id with another payload is told
  apart (HTTP 409 in ``probe serve``).

The database, and so its ``-wal`` and ``-shm`` files (SQLite gives them the database's
mode), is created 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from probe.errors import ProbeError
from probe.validate import check_int

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, digest TEXT NOT NULL,
    budget INTEGER NOT NULL, spent INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS answers (
    key_id TEXT NOT NULL, request_id TEXT NOT NULL, labels TEXT NOT NULL, at REAL NOT NULL,
    digest TEXT, PRIMARY KEY (key_id, request_id)
);
"""


class Answered(ProbeError):
    """A request with this key and id was answered already (by this server or another one)."""

    def __init__(self, labels: list[int], digest: str | None) -> None:
        super().__init__("answered already")
        self.labels = labels
        self.digest = digest


class BudgetSpent(ProbeError):
    """The key has fewer queries left than a request asks."""


@dataclass(frozen=True)
class Key:
    """One key's public row."""

    id: str
    name: str
    budget: int
    spent: int
    revoked: bool

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.spent)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class KeyStore:
    """The keys database at ``path`` (created when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))  # an existing file keeps its mode
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(answers)")]
            if "digest" not in columns:  # a database from before digests: its answers match any payload
                self._db.execute("ALTER TABLE answers ADD COLUMN digest TEXT")
        except sqlite3.Error as exc:
            raise ProbeError(f"cannot open the keys database {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, name: str, budget: int) -> str:
        """A new key (returned once, never stored) named ``name`` with ``budget`` queries."""
        check_int("--budget", budget, 0)
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ProbeError(f"a key name is letters, digits, - and _, got {name!r}")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO keys (id, name, digest, budget, created) VALUES (?, ?, ?, ?, ?)",
                    (key_id, name, _digest(secret), int(budget), time.time()),
                )
            except sqlite3.IntegrityError:
                raise ProbeError(f"a key named {name!r} exists already") from None
        return f"pk_{key_id}_{secret}"

    def revoke(self, name: str) -> None:
        with self._lock:
            if self._db.execute("UPDATE keys SET revoked = 1 WHERE name = ?", (name,)).rowcount != 1:
                raise ProbeError(f"no key named {name!r}")

    def keys(self) -> list[Key]:
        rows = self._db.execute("SELECT id, name, budget, spent, revoked FROM keys ORDER BY created").fetchall()
        return [Key(r[0], r[1], int(r[2]), int(r[3]), bool(r[4])) for r in rows]

    def get(self, key_id: str) -> Key | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, name, budget, spent, revoked FROM keys WHERE id = ?", (key_id,)
            ).fetchone()
        return None if row is None else Key(row[0], row[1], int(row[2]), int(row[3]), bool(row[4]))

    def authenticate(self, token: str | None) -> Key | None:
        """The key a presented token is, or None (unknown, wrong secret or revoked)."""
        if not token or not token.startswith("pk_") or token.count("_") < 2:
            return None
        key_id, _, secret = token[3:].partition("_")
        with self._lock:
            row = self._db.execute("SELECT digest FROM keys WHERE id = ?", (key_id,)).fetchone()
        stored = row[0] if row else _digest(secrets.token_hex(8))  # compare anyway: the same work either way
        if not hmac.compare_digest(stored.encode(), _digest(secret).encode()) or row is None:
            return None
        key = self.get(key_id)
        return None if key is None or key.revoked else key

    def answer(self, key_id: str, request_id: str) -> list[int] | None:
        """The stored answer of an earlier request with this id, if any."""
        stored = self.stored(key_id, request_id)
        return None if stored is None else stored[0]

    def stored(self, key_id: str, request_id: str) -> tuple[list[int], str | None] | None:
        """(labels, payload digest) of an earlier request with this id, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT labels, digest FROM answers WHERE key_id = ? AND request_id = ?", (key_id, request_id)
            ).fetchone()
        return None if row is None else (json.loads(row[0]), row[1])

    def charge(
        self, key_id: str, points: int, request_id: str | None, labels: list[int], digest: str | None = None
    ) -> int:
        """Spend ``points`` queries and store the answer (and its payload's digest), atomically; the budget left.

        A BudgetSpent (nothing charged) when the key has fewer left; an :class:`Answered`
        (nothing charged) when an answer with this id is stored already.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if request_id:
                    row = db.execute(
                        "SELECT labels, digest FROM answers WHERE key_id = ? AND request_id = ?", (key_id, request_id)
                    ).fetchone()
                    if row is not None:
                        raise Answered(json.loads(row[0]), row[1])
                budget, spent = db.execute("SELECT budget, spent FROM keys WHERE id = ?", (key_id,)).fetchone()
                if spent + points > budget:
                    raise BudgetSpent(f"query budget of {budget} spent ({spent} used, {points} asked)")
                db.execute("UPDATE keys SET spent = spent + ? WHERE id = ?", (points, key_id))
                if request_id:
                    db.execute(
                        "INSERT INTO answers (key_id, request_id, labels, at, digest) VALUES (?, ?, ?, ?, ?)",
                        (key_id, request_id, json.dumps(labels), time.time(), digest),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return budget - spent - points
