"""Where the embedded queue keeps its jobs across a restart: SQLite (the standard library's) for
the job records, plain files for inputs and results.

    <dir>/jobs.sqlite3        one row per job: id, the job as JSON, its idempotency key
    <dir>/inputs/<id>         a queued job's input video (deleted when the job ends)
    <dir>/checkpoints/<id>    a running job's latest decoding checkpoint (deleted when the job ends)
    <dir>/results/<id>.<variant>

The queue calls it synchronously on each transition (a few small writes; results are written
once, by the worker's completion). Only one process uses a store at a time.
"""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from .base import Job


class LocalStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        for folder in ("inputs", "results", "checkpoints"):
            (self.dir / folder).mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.dir / "jobs.sqlite3", isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, data TEXT NOT NULL, idem TEXT)")

    # --- job records ---------------------------------------------------------------------------
    def save(self, job: Job, idempotency_key: str | None = None) -> None:
        self.db.execute("INSERT INTO jobs (id, data, idem) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                        "data = excluded.data, idem = COALESCE(excluded.idem, jobs.idem)",
                        (job.id, json.dumps(job.to_dict()), idempotency_key))

    def load(self) -> list[tuple[Job, str | None]]:
        """Every stored job with its idempotency key, oldest first."""
        rows = self.db.execute("SELECT data, idem FROM jobs").fetchall()
        jobs = [(Job.from_dict(json.loads(data)), idem) for data, idem in rows]
        return sorted(jobs, key=lambda pair: (pair[0].created_at, pair[0].id))

    def delete(self, job_id: str) -> None:
        self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        for kind in ("inputs", "checkpoints"):
            self.drop_file(kind, job_id)
        for path in (self.dir / "results").glob(f"{job_id}.*"):
            path.unlink(missing_ok=True)

    # --- bytes -----------------------------------------------------------------------------------
    def _write(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a reader never sees half a file

    # A job's input and its latest checkpoint: one file each, in their own folder.
    def put_file(self, kind: str, job_id: str, data: bytes) -> None:
        """`kind`: "inputs" or "checkpoints"."""
        self._write(self.dir / kind / job_id, data)

    def read_file(self, kind: str, job_id: str) -> bytes | None:
        path = self.dir / kind / job_id
        return path.read_bytes() if path.is_file() else None

    def drop_file(self, kind: str, job_id: str) -> None:
        (self.dir / kind / job_id).unlink(missing_ok=True)

    def save_content(self, job_id: str, variant: str, data: bytes) -> None:
        self._write(self.dir / "results" / f"{job_id}.{variant}", data)

    def read_content(self, job_id: str, variant: str) -> bytes | None:
        path = self.dir / "results" / f"{job_id}.{variant}"
        return path.read_bytes() if path.is_file() else None

    def close(self) -> None:
        self.db.close()
