"""Faults (issue 20): a server killed with SIGKILL while 8 clients write loses no write it
acknowledged, on SQLite and PostgreSQL; what it never acknowledged may or may not be there, but
nothing is half-written (every identity found has its service principal)."""

from __future__ import annotations

import threading
import time

import requests

import support

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
