"""devhost's Azurite keeps every acknowledged send-ledger record through a crash of devhost.

The send ledger is what stops a resumed send from mailing people twice, so a record Azurite
acknowledged must survive devhost being killed and started again at once on the same state dir.
Real processes throughout: a *writer* (``python -m tests.devhost.test_storage_crash``) starts
Azurite through devhost's own ``_start_azurite`` and records ledger rows from several threads (as
devhost's activities do; a multi-threaded parent is what used to make Azurite die unsaved),
appending each acknowledged index to a file. The test SIGKILLs the writer (case A) or its whole
process group (case B), starts the next writer immediately on the same state dir, and reads the
killed writer's rows through the new Azurite. Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devhost.emulators.azurite import (
    LOCK_FILE,
    AzuriteLocationBusy,
    _note_holder,
    hold_location,
    start_azurite,
)
from sendmail.sending.ledger import TableSendLedger

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITER_THREADS = 4  # activities running at once
IDLE_THREADS = 8  # devhost's other threads (HTTP, engine, emulators)
KEYS = 4  # one ledger key (batch) per writer thread
RUN_SECONDS = 2.0  # writes before the kill: inside Azurite's first 5 s, before it saves on its own
MIN_ACKS = 200
TRIALS = 3
START_TIMEOUT = 120.0  # waiting for the previous Azurite (<= 60 s) + starting one (<= 30 s)
DB_FILE = "__azurite_db_table__.json"  # Azurite's table data (read only for the figures)


# --- the writer process -------------------------------------------------------------------------
def _writer(state_dir: Path, prefix: str, acks: Path, status: Path) -> None:
    from devhost.embedded import _start_azurite

    logging.basicConfig(level=logging.INFO, format="writer %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    stack = contextlib.ExitStack()
    started = time.monotonic()
    azurite = _start_azurite(state_dir, stack)
    tmp = status.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "connection_string": azurite.connection_string,
                "azurite_pid": azurite.pid,
                "start_seconds": time.monotonic() - started,
            }
        ),
        encoding="utf-8",
    )
    tmp.rename(status)
    ack_fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    stop = threading.Event()

    def write(key: str) -> None:
        ledger = TableSendLedger.from_connection_string(azurite.connection_string)
        index = 0
        while True:
            ledger.record(key, index, f"0100018f-{key}-{index:06d}")
            os.write(ack_fd, f"{key} {index}\n".encode())  # after the record is acknowledged
            index += 1

    threads = [
        threading.Thread(target=write, args=(f"{prefix}:{k}",), daemon=True) for k in range(KEYS)
    ]
    threads += [threading.Thread(target=stop.wait, daemon=True) for _ in range(IDLE_THREADS)]
    for thread in threads:
        thread.start()
    threads[0].join()  # until killed


# --- the test side -------------------------------------------------------------------------------
@dataclass
class Writer:
    process: subprocess.Popen[bytes]
    prefix: str
    acks: Path
    status: Path

    def wait_started(self) -> dict[str, object]:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.status.exists():
            if self.process.poll() is not None:
                raise AssertionError(f"writer exited with {self.process.returncode}")
            assert time.monotonic() < deadline, "writer did not start"
            time.sleep(0.02)
        return dict(json.loads(self.status.read_text(encoding="utf-8")))

    def acknowledged(self) -> dict[str, set[int]]:
        done: dict[str, set[int]] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.acks.read_text(encoding="utf-8").splitlines():
                key, _, index = line.partition(" ")
                if index.isdigit():  # (a line cut short by the kill is no acknowledgement)
                    done.setdefault(key, set()).add(int(index))
        return done

    def kill(self, kind: str) -> None:
        if kind == "A":
            self.process.send_signal(signal.SIGKILL)
        else:
            os.killpg(self.process.pid, signal.SIGKILL)  # the writer leads its own group
        self.process.wait(timeout=30)


def _spawn(state_dir: Path, work: Path) -> Writer:
    prefix = "crash" + uuid.uuid4().hex[:10]
    acks, status = work / f"{prefix}.acks", work / f"{prefix}.json"
    log = (work / "writers.log").open("ab")
    with log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.devhost.test_storage_crash",
                *(str(state_dir), prefix, str(acks), str(status)),
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for case B
        )
    return Writer(process, prefix, acks, status)


def _count(records: dict[str, set[int]]) -> int:
    return sum(len(indexes) for indexes in records.values())


def _rows_on_disk(state_dir: Path, prefix: str) -> int | None:
    """How many of ``prefix``'s rows Azurite's data file holds (diagnostics only)."""
    try:
        data = json.loads((state_dir / "azurite" / DB_FILE).read_text(encoding="utf-8"))
        return sum(
            1
            for collection in data["collections"]
            if collection["name"].endswith("SendMailLedger")
            for row in collection["data"]
            if str(row["PartitionKey"]).startswith(prefix)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stored(connection_string: str, keys: Iterable[str]) -> dict[str, set[int]]:
    ledger = TableSendLedger.from_connection_string(connection_string)
    try:
        return {key: set(ledger.sent(key)) for key in keys}
    finally:
        ledger.table_client.close()


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[list[Writer]]:
    spawned: list[Writer] = []
    yield spawned
    for writer in spawned:
        if writer.process.poll() is None:
            writer.process.kill()
            writer.process.wait(timeout=30)
    # Their Azurites close on their own (the writer's end of the pipe is gone): wait for that.
    with hold_location(tmp_path / "state" / "azurite", timeout=60):
        pass


@pytest.mark.parametrize(
    "kind", ["A", "B"], ids=["sigkill-devhost", "sigkill-devhost-process-group"]
)
def test_an_immediate_restart_after_a_sigkill_loses_no_acknowledged_record(
    kind: str, tmp_path: Path, writers: list[Writer]
) -> None:
    state_dir, work = tmp_path / "state", tmp_path / "work"
    state_dir.mkdir()
    work.mkdir()
    writers.append(_spawn(state_dir, work))
    writers[0].wait_started()
    lost_total, unsaved_total = 0, 0
    for trial in range(1, TRIALS + 1):
        killed = writers[-1]
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline or _count(killed.acknowledged()) < MIN_ACKS:
            assert killed.process.poll() is None, (work / "writers.log").read_text()
            time.sleep(0.05)
        killed.kill(kind)
        acked = killed.acknowledged()
        on_disk = _rows_on_disk(state_dir, killed.prefix)
        killed_at = time.monotonic()
        writers.append(_spawn(state_dir, work))  # at once, on the same state dir
        started = writers[-1].wait_started()
        restart_seconds = time.monotonic() - killed_at
        stored = _stored(str(started["connection_string"]), acked)
        lost = sum(len(indexes - stored[key]) for key, indexes in acked.items())
        count = _count(acked)
        unsaved = max(0, count - on_disk) if on_disk is not None else 0
        print(
            f"\ncase {kind} trial {trial}: {count} records acknowledged before the kill, "
            f"{unsaved} of them not yet on disk at the kill; lost after the restart: {lost} "
            f"(restart ready after {restart_seconds:.1f} s)"
        )
        lost_total += lost
        unsaved_total += unsaved
    assert lost_total == 0
    # The kills landed while Azurite held acknowledged rows it had not written yet: the window
    # this test is about (otherwise it could not fail).
    assert unsaved_total > 0


# --- unit level: the lock on the location, and the guard -----------------------------------------
def test_the_location_stays_locked_until_every_holder_has_exited(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    location = tmp_path / "azurite"
    with hold_location(location) as fd:
        # As start_azurite does: the child inherits the locked descriptor.
        holder = subprocess.Popen(["sleep", "30"], pass_fds=(fd,))
        _note_holder(fd, holder.pid)
    try:
        # The starter is gone (its descriptor closed), the child is not: still locked.
        began = time.monotonic()
        with (
            caplog.at_level(logging.INFO, logger="devhost.emulators.azurite"),
            pytest.raises(AzuriteLocationBusy, match=f"pid {holder.pid}"),
            hold_location(location, timeout=0.5),
        ):
            pass
        assert time.monotonic() - began >= 0.5
        assert f"Waiting for the previous Azurite (pid {holder.pid})" in caplog.text

        # It is released when that process exits, and the next start goes ahead at once.
        threading.Timer(0.5, holder.kill).start()
        began = time.monotonic()
        with hold_location(location, timeout=30):
            waited = time.monotonic() - began
            assert holder.poll() is not None
        assert 0.3 <= waited < 10
        assert (location / LOCK_FILE).exists()
    finally:
        holder.kill()
        holder.wait()


def test_repeated_sigints_still_save_everything(tmp_path: Path) -> None:
    """What a dying multi-threaded parent sends: SIGINT once per thread, while Azurite closes."""
    location = tmp_path / "azurite"
    key = "repeat:0"
    with start_azurite(("table",), location=location) as azurite:
        ledger = TableSendLedger.from_connection_string(azurite.connection_string)
        ledger.record_many(key, {i: f"id-{i}" for i in range(3000)})
        ledger.table_client.close()
        assert azurite.pid is not None
        for _ in range(5):
            os.kill(azurite.pid, signal.SIGINT)
            time.sleep(0.002)
    # (leaving the block waits for it to exit)
    with start_azurite(("table",), location=location) as azurite:
        stored = _stored(azurite.connection_string, [key])
    assert len(stored[key]) == 3000


if __name__ == "__main__":
    _writer(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
