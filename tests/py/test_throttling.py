"""Token-endpoint limits (issue 20): per client id and per remote address, answered as Entra
throttles (429, `Retry-After`, `temporarily_unavailable` AADSTS90055); azure-identity waits what
`Retry-After` says and gets its token."""

from __future__ import annotations

import time

from azure.identity import ClientSecretCredential

import support


def client_credentials(srv, scope="https://management.azure.com/.default"):
    return support.post_token(srv, {"grant_type": "client_credentials", "client_id": srv.client_id,
                                    "client_secret": srv.client_secret, "scope": scope})


def test_a_client_over_its_rate_gets_429_with_retry_after(server_factory, monkeypatch):
    srv = server_factory.start(extra_args=("--token-rate-limit", "2", "--token-address-rate-limit", "0"))
    support.use_ca(monkeypatch, srv.ca_cert_path)
    other = support.create_service_principal(srv)
    time.sleep(2.5)  # the bucket the set-up used refills
    answers = [client_credentials(srv) for _ in range(6)]
    statuses = [res.status_code for res in answers]
    assert statuses[:4] == [200] * 4, statuses  # a burst of twice the rate
    throttled = [res for res in answers if res.status_code == 429]
    assert throttled, statuses
    body = throttled[0].json()
    assert body["error"] == "temporarily_unavailable" and body["error_codes"] == [90055], body
    assert body["error_description"].startswith("AADSTS90055: There are too many incoming requests."), body
    assert int(throttled[0].headers["Retry-After"]) >= 1, throttled[0].headers
    # Another client is not held back by this one.
    res = support.post_token(srv, {"grant_type": "client_credentials", "client_id": other.app_id,
                                   "client_secret": other.secret, "scope": "https://management.azure.com/.default"})
    assert res.status_code == 200, res.text
    time.sleep(int(throttled[0].headers["Retry-After"]))
    assert client_credentials(srv).status_code == 200, "the bucket refills at the rate"

    # azure-identity (through msal and azure-core's retry policy) waits and gets its token.
    for _ in range(6):
        client_credentials(srv)
    credential = ClientSecretCredential(srv.tenant_id, srv.client_id, srv.client_secret, authority=srv.url,
                                        disable_instance_discovery=True)
    began = time.time()
    token = credential.get_token("https://graph.microsoft.com/.default")
    assert token.token and time.time() - began >= 0.3, "the credential waited for Retry-After"


def test_an_address_over_its_rate_gets_429_whatever_client_it_names(server_factory, monkeypatch):
    srv = server_factory.start(extra_args=("--token-rate-limit", "0", "--token-address-rate-limit", "3"))
    support.use_ca(monkeypatch, srv.ca_cert_path)
    statuses = [support.post_token(srv, {"grant_type": "client_credentials", "client_id": f"00000000-0000-0000-0000-{n:012d}",
                                         "client_secret": "x", "scope": "https://management.azure.com/.default"}).status_code
                for n in range(10)]
    assert all(code != 429 for code in statuses[:6]), statuses  # unknown clients: refused, not throttled
    assert 429 in statuses[6:], statuses
