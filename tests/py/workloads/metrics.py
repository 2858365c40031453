"""The metrics workload "on the VM" (run by `openmi vm run`): a managed-identity token through
azure-identity (the agent asks the server), the same token twice more through IMDS directly (the
agent answers from its cache or memo), a burst over the agent's rate limit, then the agent's own
/metrics. It prints one JSON document; its argument is a JSON spec (see support.run_workload)."""

import json, os, sys

import requests
from azure.identity import ManagedIdentityCredential

spec = json.loads(sys.argv[1])
agent = os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"].rstrip("/")
resource = "https://management.azure.com"
out = {}

try:
    out["token"] = ManagedIdentityCredential().get_token(resource + "/.default").token
except Exception as err:  # reported, not raised: the test shows it
    out["token_error"] = f"{type(err).__name__}: {err}"

params = {"api-version": "2018-02-01", "resource": resource}
imds = agent + "/metadata/identity/oauth2/token"
out["again"] = [requests.get(imds, params=params, headers={"Metadata": "true"}, timeout=30).status_code for _ in range(2)]

# Over the agent's limit (Azure's 20 requests/s per VM): some are answered 429.
out["burst"] = [
    requests.get(imds, params=params, headers={"Metadata": "true"}, timeout=30).status_code
    for _ in range(spec.get("burst", 0))
]

res = requests.get(agent + "/metrics", timeout=30)
out["metrics_status"] = res.status_code
out["metrics_content_type"] = res.headers.get("content-type")
out["metrics"] = res.text
print(json.dumps(out))
