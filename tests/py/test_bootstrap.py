"""bootstrap.json: private, complete, and stable across restarts on the same data dir."""

from __future__ import annotations

import stat

from azure.identity import ClientSecretCredential

import support
from support import ARM, ARM_SCOPE


def test_bootstrap_file_is_private_and_complete(server):
    path = server.data_dir / "bootstrap.json"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, oct(mode)
    boot = support.read_bootstrap(server.data_dir)
    # The 8 keys everything else reads (more, such as subscriptionName, may follow).
    assert set(support.BOOTSTRAP_KEYS.values()) <= set(boot), sorted(boot)
    for key in support.BOOTSTRAP_KEYS.values():
        assert isinstance(boot[key], str) and boot[key], (key, sorted(boot))
    assert support.bootstrap_value(boot, "url") == server.url
    assert support.GUID_RE.match(server.tenant_id)
    assert support.GUID_RE.match(server.subscription_id)
    assert support.GUID_RE.match(server.client_id)


def test_restart_keeps_identity_and_secret(server_factory, monkeypatch):
    first = server_factory.start()
    boot_first = support.read_bootstrap(first.data_dir)
    server_factory.stop(first)

    second = server_factory.start(data_dir=first.data_dir, database_url=first.database_url, port=first.port)
    support.use_ca(monkeypatch, second.ca_cert_path)
    boot_second = support.read_bootstrap(second.data_dir)
    for key in ("url", "tenantId", "subscriptionId", "clientId", "clientSecret", "adminUsername", "adminPassword", "caCertPath"):
        assert boot_second.get(key) == boot_first.get(key), key
    assert second.tenant_id == first.tenant_id
    assert second.subscription_id == first.subscription_id

    # The secret written by the first start still authenticates against the second.
    credential = ClientSecretCredential(
        first.tenant_id, first.client_id, first.client_secret, authority=second.url, disable_instance_discovery=True
    )
    claims = support.verify_token(second, credential.get_token(ARM_SCOPE).token, audience=ARM)
    assert claims["appid"] == first.client_id
