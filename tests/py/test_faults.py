"""Faults (issue 20), survived and said clearly:

- two replicas on one PostgreSQL, one killed with SIGKILL under 8 writers: the other goes on serving
  and nothing acknowledged is lost;
- a server killed with SIGKILL while 8 clients write loses no write it acknowledged, on SQLite and
  PostgreSQL; what it never acknowledged may or may not be there, but nothing is half-written
  (every identity found has its service principal);
- PostgreSQL stopped (`pg_ctl stop -m immediate`) under 8 writers, kept down until the server has
  answered a write the dead database held (its pool waits up to 10 s for a connection), and
  started again: every answer is 2xx or 503 with `Retry-After` in ARM's shape (no 500, nothing
  hangs), the server reconnects by itself, and no acknowledged write is lost (a private PostgreSQL
  instance of the test, so that no other test loses its database);
- a full disk under SQLite (a 16 MB tmpfs as the data dir, root only): writes fail fast in ARM's
  shape, reads and the server go on, writes succeed again once there is room, and every
  acknowledged write is there after a restart, the database whole;
- `openmi server keys rotate` (another process) while 4 clients mint tokens and verify each with
  the JWKS: no verification fails, the new key is published before it signs, and signs from its
  `activatesAt` within the key reload interval.
Each prints its figures (pytest -s shows them).
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
import requests

import support
from support import ARM

WRITERS = 8


def test_kill_9_during_concurrent_writes_loses_no_acknowledged_write(server_factory, monkeypatch):
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    arm = support.arm_clients(srv)
    rg = support.unique_name("pyrg-fault")
    arm.create_group(rg)
    token = arm.token()
    acknowledged: dict[str, str] = {}
    attempted = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int) -> None:
        with requests.Session() as session:
            for n in range(100_000):
                if stop.is_set():
                    return
                name = f"w{number}-{n}"
                with lock:
                    attempted[0] += 1
                try:
                    res = session.put(
                        f"{srv.url}{arm.identity_id(rg, name)}", params={"api-version": "2023-01-31"},
                        json={"location": "westus", "tags": {"n": str(n)}},
                        headers={"Authorization": f"Bearer {token}"}, verify=srv.ca_cert_path, timeout=10,
                    )
                except requests.RequestException:
                    return  # the server is gone
                if res.status_code in (200, 201):
                    with lock:
                        acknowledged[name] = res.json()["properties"]["principalId"]

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    srv.proc.kill()  # SIGKILL: no shutdown, no flush
    srv.proc.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) > 20, f"the writers got {len(acknowledged)} writes acknowledged before the kill"

    again = server_factory.start(data_dir=srv.data_dir, database_url=srv.database_url)
    arm = support.arm_clients(again)
    found = {i.name: i for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)}
    lost = sorted(set(acknowledged) - set(found))
    changed = sorted(name for name, principal in acknowledged.items() if name in found and found[name].principal_id != principal)
    unacknowledged = len(set(found) - set(acknowledged))
    print(f"\nkill -9 under {WRITERS} writers ({'postgres' if srv.database_url else 'sqlite'}): {attempted[0]} PUTs sent, "
          f"{len(acknowledged)} acknowledged, {len(found)} found after restart, {len(lost)} lost, "
          f"{unacknowledged} found that were never acknowledged")
    assert lost == [], f"acknowledged writes lost: {lost[:10]}"
    assert changed == [], f"identities whose principal changed: {changed[:10]}"
    # Nothing half-written: every identity found has its service principal in the directory.
    graph = arm.token("https://graph.microsoft.com/.default")
    for identity in found.values():
        res = arm.raw("GET", f"/v1.0/servicePrincipals/{identity.principal_id}", token=graph)
        assert res.status_code == 200 and res.json()["appId"] == identity.client_id, (identity.name, res.text[:300])


# --------------------------------------------------------------------------------------------------
# PostgreSQL restarted under load


def _pg_bindir() -> Path | None:
    """The newest PostgreSQL's bin dir under /usr/lib/postgresql (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0)
    return Path(found[-1]) if found and (Path(found[-1]) / "pg_ctl").exists() else None


class PrivatePostgres:
    """A PostgreSQL instance of one test: its own cluster in a temp dir, on a free port, its socket
    in that dir; as the `postgres` OS user when the test runs as root (PostgreSQL refuses root)."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql/*/bin (initdb, pg_ctl)")
        self.bindir = bindir
        # Not under pytest's tmp_path: that is 0700 root's, which the postgres user cannot enter.
        # Short, too: the socket path (dir + /.s.PGSQL.<port>) must fit in 107 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="openmi-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_user: list[str] = []
        self.port = 0
        # pg_ctl detaches the postmaster: stop it even if this process ends without teardown.
        atexit.register(self.cleanup)
        try:
            if os.geteuid() == 0:
                try:
                    shutil.chown(self.dir, "postgres", "postgres")
                except LookupError:
                    pytest.skip("running as root without a `postgres` OS user to run a private PostgreSQL as")
                self.as_user = ["runuser", "-u", "postgres", "--"]
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions")
            for _attempt in range(3):  # another process may take the free port first
                self.port = support.free_port()
                if self.start(check=False):
                    break
            else:
                raise AssertionError(f"private PostgreSQL did not start; log tail:\n{support.tail(self.log)}")
        except BaseException:
            self.cleanup()
            raise
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [*self.as_user, str(self.bindir / program), *args],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.dir,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"{program} {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}\nlog tail:\n{support.tail(self.log)}")
        return res

    def start(self, check: bool = True) -> bool:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=100"
        res = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start", check=check)
        return res.returncode == 0

    def stop(self, mode: str = "immediate") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def cleanup(self, keep_log: Path | None = None) -> None:
        """Stops the instance and removes its files; idempotent."""
        try:
            if (self.data / "postmaster.pid").exists() and self.running():
                self.stop("immediate")
        finally:
            if keep_log is not None and self.log.exists():
                shutil.copyfile(self.log, keep_log)
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_pg(tmp_path):
    """Set up before `server_factory` (name it first), so it is torn down after the servers stop;
    its log is kept as tmp_path/postgres.log."""
    pg = PrivatePostgres()
    try:
        yield pg
    finally:
        pg.cleanup(keep_log=tmp_path / "postgres.log")


@dataclass
class Outcome:
    """One ARM write as its client saw it."""

    name: str
    sent: float
    answered: float
    status: int | None  # None: no HTTP answer (the error says why)
    retry_after: str | None = None
    body: str = ""
    error: str | None = None


def _put_identity(session: requests.Session, srv: support.Server, arm: support.ArmClients, rg: str, name: str, token: str,
                  timeout: float = 60) -> tuple[Outcome, str | None]:
    """PUT a user-assigned identity (raw ARM, no retries): the outcome, and its principal id if acknowledged."""
    sent = time.monotonic()
    try:
        res = session.put(
            f"{srv.url}{arm.identity_id(rg, name)}", params={"api-version": support.ARM_MSI_API},
            json={"location": "westus", "tags": {"name": name}},
            headers={"Authorization": f"Bearer {token}"}, verify=srv.ca_cert_path, timeout=timeout,
        )
    except requests.RequestException as err:
        return Outcome(name, sent, time.monotonic(), None, error=f"{type(err).__name__}: {err}"), None
    outcome = Outcome(name, sent, time.monotonic(), res.status_code, res.headers.get("retry-after"), res.text[:500])
    principal = res.json()["properties"]["principalId"] if res.status_code in (200, 201) else None
    return outcome, principal


@dataclass
class WriteLoad:
    """Writers PUTting user-assigned identities (raw ARM with a bearer token, no client retries, so
    every answer is seen as the server gave it) until stopped."""

    srv: support.Server
    arm: support.ArmClients
    rg: str
    writers: int = 8
    timeout: float = 60
    outcomes: list = field(default_factory=list)
    acknowledged: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    threads: list = field(default_factory=list)

    def start(self) -> None:
        token = self.arm.token()
        self.threads = [threading.Thread(target=self._writer, args=(number, token), daemon=True) for number in range(self.writers)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=self.timeout + 30)
        assert not any(thread.is_alive() for thread in self.threads), "a writer is still waiting for an answer"

    def _writer(self, number: int, token: str) -> None:
        with requests.Session() as session:
            n = 0
            while not self.stopping.is_set():
                name = f"w{number}-{n}"
                n += 1
                outcome, principal = _put_identity(session, self.srv, self.arm, self.rg, name, token, self.timeout)
                with self.lock:
                    self.outcomes.append(outcome)
                    if principal:
                        self.acknowledged[name] = principal
                if outcome.status is None:
                    time.sleep(0.1)
                elif outcome.status >= 500:
                    time.sleep(0.05)

    def held_and_answered(self, down_at: float, answered_before: float) -> list:
        """The writes the dead database held: answered 1 s or more after it went down and after
        they were sent, and before `answered_before`."""
        with self.lock:
            return [o for o in self.outcomes if down_at + 1.0 <= o.answered <= answered_before and o.answered - o.sent >= 1.0]

    def acknowledged_since(self, since: float) -> int:
        with self.lock:
            return sum(1 for o in self.outcomes if o.status in (200, 201) and o.sent >= since)


def _arm_error_shape(outcome: Outcome) -> str | None:
    """What is wrong with an error answer's body, measured against ARM's `{"error":{"code","message"}}`."""
    try:
        body = json.loads(outcome.body)
    except ValueError:
        return f"not JSON: {outcome.body[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not error["code"] or not isinstance(error.get("message"), str) or not error["message"]:
        return f"not ARM's error shape: {outcome.body[:200]!r}"
    return None


def _found_identities(srv: support.Server, rg: str) -> dict:
    arm = support.arm_clients(srv)
    return {i.name: i for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)}


# A request answered later than this after it was sent counts as hung.
HANG_SECONDS = 15
# The longest PostgreSQL is kept down waiting for an answer to a write sent while it is down.
OUTAGE_MAX_SECONDS = 25


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgresql_restarted_under_load_answers_503_reconnects_and_loses_nothing(private_pg, server_factory, monkeypatch):
    srv = server_factory.start(database_url=private_pg.url)
    support.use_ca(monkeypatch, srv.ca_cert_path)
    arm = support.arm_clients(srv)
    rg = support.unique_name("pyrg-pgdown")
    arm.create_group(rg)
    load = WriteLoad(srv, arm, rg, writers=WRITERS)
    load.start()
    try:
        time.sleep(2.0)
        stopping_at = time.monotonic()
        private_pg.stop("immediate")  # returns once the postmaster is gone
        down_at = time.monotonic()
        # Down for 3 s at least, and until the server has answered a write sent while it is down
        # (a request may wait for a connection up to the store's acquire timeout, 10 s).
        time.sleep(3.0)
        while not load.held_and_answered(down_at, time.monotonic()) and time.monotonic() < down_at + OUTAGE_MAX_SECONDS:
            time.sleep(0.1)
        up_at = time.monotonic()
        private_pg.start()
        back_at = time.monotonic()
        # The server reconnects by itself: writes sent after PostgreSQL is back are acknowledged.
        deadline = back_at + 30
        while load.acknowledged_since(back_at) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        reconnected = time.monotonic() - back_at
        time.sleep(1.0)
    finally:
        load.stop()
    assert load.acknowledged_since(back_at) >= 10, f"no writes acknowledged within 30 s of PostgreSQL's return; outcomes since: {[o for o in load.outcomes if o.sent >= back_at][:5]}"

    outcomes = load.outcomes
    during = {id(o) for o in outcomes if o.answered >= stopping_at and o.sent <= back_at}
    answered_down = [o for o in outcomes if stopping_at <= o.answered <= up_at]
    held = load.held_and_answered(down_at, up_at)
    ok = [o for o in outcomes if o.status in (200, 201)]
    unavailable = [o for o in outcomes if o.status == 503]
    other = [o for o in outcomes if o.status not in (200, 201, 503)]
    slowest = max((o.answered - o.sent for o in outcomes), default=0.0)
    found = _found_identities(srv, rg)
    lost = sorted(set(load.acknowledged) - set(found))
    changed = sorted(n for n, p in load.acknowledged.items() if n in found and found[n].principal_id != p)
    print(
        f"\nPostgreSQL stopped (immediate) for {up_at - down_at:.1f} s under {WRITERS} writers: {len(outcomes)} PUTs, "
        f"{len(ok)} acknowledged ({sum(1 for o in ok if id(o) in during)} of them sent or answered while it was down), "
        f"{len(unavailable)} failed with 503 (Retry-After {sorted({o.retry_after for o in unavailable}, key=str)}), "
        f"{len(other)} other failures {sorted({(o.status, o.error and o.error.split(':')[0]) for o in other}, key=str)}, "
        f"{len(answered_down)} answered while it was down ({len(held)} of them held by the dead database, answered after "
        f"{min((o.answered - o.sent for o in held), default=float('nan')):.1f} s at the earliest, with {sorted({o.status for o in held}, key=str)}), "
        f"slowest answer {slowest:.1f} s, "
        f"writes acknowledged again {reconnected:.1f} s after it was back; {len(found)} found, {len(lost)} lost"
    )
    for sample in (unavailable[:1] + other[:3]):
        print(f"  sample: HTTP {sample.status} after {sample.answered - sample.sent:.1f} s: {sample.error or sample.body[:300]}")

    assert lost == [], f"acknowledged writes lost: {lost[:10]}"
    assert changed == [], f"identities whose principal changed: {changed[:10]}"
    assert other == [], f"answers other than 2xx and 503 (a 500 or no answer): {other[:5]}"
    assert slowest < HANG_SECONDS, f"a write waited {slowest:.1f} s for its answer"
    assert held, f"no write waiting for the dead database was answered in the {up_at - down_at:.1f} s it was down"
    for outcome in unavailable:
        assert outcome.retry_after and outcome.retry_after.isdigit() and int(outcome.retry_after) >= 1, f"503 without a Retry-After of whole seconds: {outcome}"
        shape = _arm_error_shape(outcome)
        assert shape is None, f"503 {shape}"
    assert srv.is_running()
    assert srv.get("/readyz").status_code == 200


# --------------------------------------------------------------------------------------------------
# A full disk under SQLite

TMPFS_SIZE = "16m"


def _fill(path: Path) -> int:
    """Write `path` until the file system has no room left (ENOSPC); the bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as filler:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9):
            block = b"\0" * chunk
            while True:
                try:
                    written += filler.write(block)
                except OSError:
                    break
    return written


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_full_disk_under_sqlite_fails_writes_clearly_and_recovers(server_factory, tmp_path, monkeypatch):
    data_dir = tmp_path / "tmpfs"
    data_dir.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {TMPFS_SIZE} tmpfs as the data dir (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    logs = tmp_path / "logs"  # not on the full disk: the log says what happened
    logs.mkdir()
    try:
        _full_disk_scenario(server_factory, data_dir, logs, monkeypatch)
    finally:
        try:
            # Nothing may hold the mount: stop its servers first.
            for started in server_factory.servers:
                if started.is_running():
                    server_factory.stop(started)
        finally:
            unmounted = subprocess.run(["umount", str(data_dir)], capture_output=True, text=True, timeout=30)
            if unmounted.returncode != 0:
                subprocess.run(["umount", "-l", str(data_dir)], capture_output=True, timeout=30)


def _full_disk_scenario(server_factory, data_dir: Path, logs: Path, monkeypatch) -> None:
    srv = server_factory.start(data_dir=data_dir, log_dir=logs)
    support.use_ca(monkeypatch, srv.ca_cert_path)
    arm = support.arm_clients(srv)
    rg = support.unique_name("pyrg-full")
    arm.create_group(rg)
    token = arm.token()
    acknowledged: dict[str, str] = {}
    outcomes: list[Outcome] = []
    counter = [0]

    def write(session: requests.Session) -> Outcome:
        counter[0] += 1
        outcome, principal = _put_identity(session, srv, arm, rg, f"id-{counter[0]}", token, timeout=HANG_SECONDS + 15)
        outcomes.append(outcome)
        if principal:
            acknowledged[outcome.name] = principal
        return outcome

    with requests.Session() as session:
        for _ in range(20):
            assert write(session).status in (200, 201), outcomes[-1]
        before_full = len(acknowledged)

        filler = data_dir / "filler"
        filled = _fill(filler)
        # SQLite may still have room inside its files (WAL frames after a checkpoint): write until
        # writes fail, and then some more, which must fail the same way.
        failed: list[Outcome] = []
        for _ in range(2000):
            outcome = write(session)
            if outcome.status not in (200, 201):
                failed.append(outcome)
                if len(failed) >= 10:
                    break
        acknowledged_while_filling = len(acknowledged) - before_full
        assert failed, f"2000 writes succeeded after {filled} bytes of filler filled the disk"

        # Reads go on, and so does the server: a token, a read of a written identity, a list.
        some = next(iter(acknowledged))
        read = session.get(f"{srv.url}{arm.identity_id(rg, some)}", params={"api-version": support.ARM_MSI_API},
                           headers={"Authorization": f"Bearer {token}"}, verify=srv.ca_cert_path, timeout=HANG_SECONDS)
        listed = session.get(f"{srv.url}{arm.rg_id(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
                             params={"api-version": support.ARM_MSI_API}, headers={"Authorization": f"Bearer {token}"},
                             verify=srv.ca_cert_path, timeout=HANG_SECONDS)
        minted = support.post_token(srv, support.client_credentials(srv), timeout=HANG_SECONDS)
        healthz = srv.get("/healthz", timeout=HANG_SECONDS)
        readyz = srv.get("/readyz", timeout=HANG_SECONDS)
        alive = srv.is_running()

        # Room again: writes succeed again (within a few seconds).
        filler.unlink()
        recovered_after = None
        freed_at = time.monotonic()
        while time.monotonic() < freed_at + 30:
            if write(session).status in (200, 201):
                recovered_after = time.monotonic() - freed_at
                break
            time.sleep(0.2)
        for _ in range(20):
            write(session)

    codes = sorted({(o.status, _arm_code(o)) for o in failed}, key=str)
    slowest = max(o.answered - o.sent for o in outcomes)
    after_freed = outcomes[-20:]
    print(
        f"\ndisk full under SQLite ({TMPFS_SIZE} tmpfs, {filled >> 10} KiB of filler): {len(outcomes)} PUTs, "
        f"{acknowledged_while_filling} acknowledged after the filler before the first failure, "
        f"{len(failed)} failed {codes}; while full: GET {read.status_code}, list {listed.status_code}, "
        f"token {minted.status_code}, /healthz {healthz.status_code}, /readyz {readyz.status_code}; "
        f"a write acknowledged again {recovered_after if recovered_after is None else round(recovered_after, 1)} s after the filler went, "
        f"then {sum(1 for o in after_freed if o.status in (200, 201))} of {len(after_freed)} more; slowest answer {slowest:.1f} s"
    )
    print(f"  sample failure: HTTP {failed[0].status}: {failed[0].error or failed[0].body[:300]}")

    # Every acknowledged write is there after a restart on the same data dir, and the database is whole.
    server_factory.stop(srv)
    with sqlite3.connect(f"file:{_sqlite_file(data_dir)}?mode=ro", uri=True) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchall()
    again = server_factory.start(data_dir=data_dir, database_url=None, log_dir=logs)
    found = _found_identities(again, rg)
    lost = sorted(set(acknowledged) - set(found), key=lambda name: int(name.split("-")[1]))
    changed = sorted(n for n, p in acknowledged.items() if n in found and found[n].principal_id != p)
    print(f"  after a restart: {len(acknowledged)} acknowledged, {len(found)} found, {len(lost)} lost {lost[:10]}; integrity_check {integrity}")

    assert lost == [], f"acknowledged writes lost: {lost[:10]}"
    assert changed == [], f"identities whose principal changed: {changed[:10]}"
    assert integrity == [("ok",)], integrity
    for outcome in failed:
        # 503 with Retry-After, saying why: nothing was kept and the write can be retried.
        assert outcome.status == 503 and outcome.retry_after == "1", f"a write on a full disk: {outcome}"
        assert "disk is full" in outcome.body, f"a write on a full disk: {outcome}"
        shape = _arm_error_shape(outcome)
        assert shape is None, f"HTTP {outcome.status} {shape}"
    assert slowest < HANG_SECONDS, f"a write waited {slowest:.1f} s for its answer"
    assert alive, "the server exited on a full disk"
    assert read.status_code == 200, f"a read on a full disk: HTTP {read.status_code}: {read.text[:300]}"
    assert listed.status_code == 200, f"a list on a full disk: HTTP {listed.status_code}: {listed.text[:300]}"
    assert healthz.status_code == 200, healthz.text
    assert recovered_after is not None, f"writes still fail 30 s after the filler was deleted: {outcomes[-1]}"
    assert all(o.status in (200, 201) for o in after_freed), \
        f"writes fail after the filler was deleted: {[o for o in after_freed if o.status not in (200, 201)][:3]}"


def _sqlite_file(data_dir: Path) -> Path:
    candidates = [p for p in data_dir.iterdir() if p.suffix in (".db", ".sqlite", ".sqlite3")]
    assert len(candidates) == 1, f"no single SQLite database in {data_dir}: {sorted(p.name for p in data_dir.iterdir())}"
    return candidates[0]


def _arm_code(outcome: Outcome) -> str | None:
    try:
        return json.loads(outcome.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# --------------------------------------------------------------------------------------------------
# Key rotation during token load

MINTERS = 4
KEY_RELOAD_INTERVAL = 1
# Long enough for every validator's cached JWKS (1 s old at most, here) to list the new key before
# it signs: it is published at the server's next key reload (KEY_RELOAD_INTERVAL). With 0, a
# validator that cached the JWKS within its refetch cooldown (30 s in PyJWT and jose) fails.
PUBLISH_DELAY = 4
JWKS_CACHE_SECONDS = 1


@dataclass
class Mint:
    started: float
    wall: float = field(default_factory=time.time)  # when the mint began, on the clock the server reads
    kid: str | None = None
    token: str | None = None
    error: str | None = None  # the mint's or the validation's failure


def test_key_rotation_during_token_load_fails_no_validation(server_factory, monkeypatch):
    from azure.identity import ClientSecretCredential

    srv = server_factory.start(extra_args=["--key-reload-interval", str(KEY_RELOAD_INTERVAL)])
    support.use_ca(monkeypatch, srv.ca_cert_path)
    issuer = f"{srv.url}/{srv.tenant_id}/"
    jwks_uri = support.discovery(srv)["jwks_uri"]
    mints: list[Mint] = []
    lock = threading.Lock()
    stopping = threading.Event()

    def minter() -> None:
        # A validator as resource servers keep one: the JWKS cached (JWKS_CACHE_SECONDS), fetched
        # again for an unknown kid (at most once per PyJWT's 30 s cooldown).
        jwks = jwt.PyJWKClient(jwks_uri, cache_jwk_set=True, lifespan=JWKS_CACHE_SECONDS, ssl_context=srv.ssl_context())
        while not stopping.is_set():
            mint = Mint(time.monotonic())
            try:
                # A new credential each time, so every token is minted (azure-identity caches them).
                credential = ClientSecretCredential(srv.tenant_id, srv.client_id, srv.client_secret,
                                                    authority=srv.url, disable_instance_discovery=True)
                mint.token = credential.get_token(support.ARM_SCOPE).token
                mint.kid = jwt.get_unverified_header(mint.token).get("kid")
                key = jwks.get_signing_key_from_jwt(mint.token)
                jwt.decode(mint.token, key.key, algorithms=["RS256"], audience=ARM, issuer=issuer,
                           options={"require": ["exp", "iat", "nbf", "aud", "iss"]}, leeway=5)
            except Exception as err:  # noqa: BLE001 - every failure is counted and shown
                mint.error = f"{type(err).__name__}: {err}"
            with lock:
                mints.append(mint)

    published_kids = {k["kid"] for k in srv.get(jwks_uri.removeprefix(srv.url)).json()["keys"]}
    published: dict[str, float] = {}

    def jwks_watcher() -> None:
        """When each new kid first appears in the JWKS."""
        with requests.Session() as session:
            while not stopping.is_set():
                try:
                    keys = session.get(jwks_uri, verify=srv.ca_cert_path, timeout=10).json()["keys"]
                except (requests.RequestException, ValueError, KeyError):
                    keys = []
                now = time.monotonic()
                for key in keys:
                    if key.get("kid") not in published_kids:
                        published.setdefault(key["kid"], now)
                time.sleep(0.1)

    threads = [threading.Thread(target=minter, daemon=True) for _ in range(MINTERS)]
    threads.append(threading.Thread(target=jwks_watcher, daemon=True))
    for thread in threads:
        thread.start()
    try:
        time.sleep(2.0)
        with lock:
            old_kids = {m.kid for m in mints if m.kid}
        # Another process rotates (on SQLite, the same database file; on PostgreSQL, the same database).
        command = [support.OPENMI_BIN, "server", "keys", "rotate", "--data-dir", str(srv.data_dir), *srv.db_args(),
                   "--publish-delay", str(PUBLISH_DELAY)]
        rotating_at = time.monotonic()
        rotated = subprocess.run(command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        rotated_at = time.monotonic()
        assert rotated.returncode == 0, f"{command} -> {rotated.returncode}\n{rotated.stdout}\n{rotated.stderr}"
        printed = json.loads(rotated.stdout)  # {"kid", "activatesAt"}: epoch seconds
        deadline = rotated_at + PUBLISH_DELAY + KEY_RELOAD_INTERVAL + 10
        while time.monotonic() < deadline:
            with lock:
                if any(m.kid and m.kid not in old_kids for m in mints):
                    break
            time.sleep(0.05)
        time.sleep(2.0)  # more load under the new key
    finally:
        stopping.set()
        for thread in threads:
            thread.join(timeout=60)

    # Tokens minted before the rotation still verify against the JWKS as it is now.
    fresh = jwt.PyJWKClient(jwks_uri, cache_jwk_set=False, ssl_context=srv.ssl_context())
    before = [m for m in mints if m.token and m.kid in old_kids]
    stale_failures = []
    for mint in before[-20:]:
        try:
            jwt.decode(mint.token, fresh.get_signing_key_from_jwt(mint.token).key, algorithms=["RS256"], audience=ARM, issuer=issuer, leeway=5)
        except Exception as err:  # noqa: BLE001
            stale_failures.append(f"{type(err).__name__}: {err}")

    failures = [m for m in mints if m.error]
    new = [m for m in mints if m.kid and m.kid not in old_kids]
    first_new = min((m.started for m in new), default=None)
    first_new_wall = min((m.wall for m in new), default=None)
    # Once a token of the new key was minted, every token minted after it carries the new key.
    flipped_back = [m for m in mints if first_new is not None and m.started > first_new + 0.2 and m.kid in old_kids]
    kids = {}
    for mint in mints:
        if mint.kid:
            kids[mint.kid] = kids.get(mint.kid, 0) + 1
    delay = None if first_new is None else first_new - rotated_at
    published_after = min(published.values(), default=rotated_at + 999) - rotated_at
    print(
        f"\nkey rotation under {MINTERS} minting clients ({'postgres' if srv.database_url else 'sqlite'}, "
        f"--key-reload-interval {KEY_RELOAD_INTERVAL}): {len(mints)} mints, {sum(1 for m in mints if m.token)} tokens, "
        f"{sum(1 for m in mints if m.token and not m.error)} validations passed, {len(failures)} failures; "
        f"kids seen {kids} (old {sorted(old_kids)}); new key in the JWKS {published_after:.2f} s and its first token "
        f"{delay if delay is None else round(delay, 2)} s after `keys rotate --publish-delay {PUBLISH_DELAY}` returned "
        f"(the command took {rotated_at - rotating_at:.2f} s), "
        f"{'-' if first_new_wall is None else round(first_new_wall - printed['activatesAt'], 2)} s after its activatesAt; "
        f"{len(flipped_back)} tokens of the old key after it; "
        f"{len(before[-20:]) - len(stale_failures)}/{len(before[-20:])} earlier tokens still verify"
    )
    for mint in failures[:3]:
        print(f"  failure: {mint.error[:300]}")
    assert len(old_kids) == 1, f"tokens before the rotation were signed by {old_kids}"
    assert failures == [], f"{len(failures)} mints or validations failed: {[m.error for m in failures[:5]]}"
    assert new, f"no token signed by a new key within {PUBLISH_DELAY + KEY_RELOAD_INTERVAL + 10} s of `keys rotate`; kids {kids}"
    new_kid = new[0].kid
    assert new_kid == printed["kid"], f"tokens were signed by {new_kid}, `keys rotate` added {printed}"
    assert new_kid in published, f"the new key {new_kid} never appeared in the JWKS: {published}"
    # Published within a reload interval of the rotation, well before it signs ...
    assert published_after <= KEY_RELOAD_INTERVAL + 0.5, f"the new key was published {published_after:.2f} s after the rotation"
    assert published[new_kid] < first_new, "the new key signed before the JWKS published it"
    # ... and signing from its activation (`activatesAt`, in whole seconds: the publish delay after
    # the rotation's second), within a reload interval.
    assert first_new_wall >= printed["activatesAt"] - 0.25, f"the new key signed {first_new_wall - printed['activatesAt']:.2f} s after its activatesAt"
    assert first_new_wall <= printed["activatesAt"] + KEY_RELOAD_INTERVAL, \
        f"the new key signed {first_new_wall - printed['activatesAt']:.2f} s after its activatesAt (reload interval {KEY_RELOAD_INTERVAL} s)"
    assert len({m.kid for m in new}) == 1, f"more than one new kid: {kids}"
    assert flipped_back == [], f"{len(flipped_back)} tokens signed by the old key after the new one signed"
    assert stale_failures == [], stale_failures[:3]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_replica_killed_while_another_serves(server_factory, tmp_path, monkeypatch):
    """Two replicas on one PostgreSQL, 8 writers spread over both; one is killed with SIGKILL: the
    other goes on answering (its writers see no failure), nothing acknowledged by either is
    lost, and what the dead one wrote is read through the living one."""
    kek = tmp_path / "kek.hex"
    kek.write_text(os.urandom(32).hex() + "\n")
    kek.chmod(0o600)
    db_url = server_factory.new_database_url()
    one = server_factory.start(database_url=db_url, extra_args=["--key-encryption-key-file", str(kek)])
    two = server_factory.start(database_url=db_url, extra_args=["--key-encryption-key-file", str(kek)])
    support.use_ca(monkeypatch, one.ca_cert_path)
    arm = support.arm_clients(one)
    rg = support.unique_name("pyrg-replica")
    arm.create_group(rg)
    token = arm.token()
    acknowledged: dict[str, str] = {}
    failures: dict[str, list] = {"one": [], "two": []}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int, srv: support.Server, which: str) -> None:
        with requests.Session() as session:
            for n in range(100_000):
                if stop.is_set():
                    return
                name = f"{which}{number}-{n}"
                try:
                    res = session.put(
                        f"{srv.url}{arm.identity_id(rg, name)}", params={"api-version": "2023-01-31"},
                        json={"location": "westus"}, headers={"Authorization": f"Bearer {token}"},
                        verify=srv.ca_cert_path, timeout=HANG_SECONDS,
                    )
                except requests.RequestException as error:
                    with lock:
                        failures[which].append(repr(error)[:120])
                    if which == "one":
                        return  # its server is gone
                    continue
                if res.status_code in (200, 201):
                    with lock:
                        acknowledged[name] = res.json()["properties"]["principalId"]
                else:
                    with lock:
                        failures[which].append(f"HTTP {res.status_code}: {res.text[:120]}")

    threads = [threading.Thread(target=writer, args=(i, one if i % 2 else two, "one" if i % 2 else "two")) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    one.proc.kill()
    one.proc.wait(timeout=10)
    killed_at = len(acknowledged)
    time.sleep(2.0)  # the living replica alone
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    by_two_after = sum(1 for name in acknowledged if name.startswith("two"))
    # Read through the living replica (its own CA; the bootstrap client's secret works there too).
    support.use_ca(monkeypatch, two.ca_cert_path)
    living = support.clients_as(two, support.secret_credential(two, one.client_id, one.client_secret))
    found = {i.name: i for i in living.msi.user_assigned_identities.list_by_resource_group(rg)}
    lost = sorted(set(acknowledged) - set(found))
    changed = sorted(n for n, p in acknowledged.items() if n in found and found[n].principal_id != p)
    print(f"\nreplica killed under 8 writers: {len(acknowledged)} acknowledged ({killed_at} when it was killed, "
          f"{by_two_after} by the living one in all), {len(found)} found through the living one, {len(lost)} lost, "
          f"failures of the living one's writers {len(failures['two'])}, of the dead one's {len(failures['one'])}")
    assert killed_at > 10, "the writers did not get going"
    assert failures["two"] == [], f"the living replica failed writes: {failures['two'][:3]}"
    assert len(acknowledged) > killed_at, "the living replica stopped acknowledging"
    assert lost == [] and changed == [], (lost[:10], changed[:10])
    assert two.get("/readyz").status_code == 200
