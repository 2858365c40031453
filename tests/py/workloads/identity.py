"""The workload "on the VM": what a program there would run, with nothing but the environment
`openmi vm run` gives it. It prints one JSON document; its argument is a JSON spec (see
support.run_workload)."""

import json, os, sys

spec = json.loads(sys.argv[1])
out = {"env": {k: os.environ.get(k) for k in (
    "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT",
    "MSI_SECRET", "IMDS_ENDPOINT", "AZURE_CLIENT_ID")}}

from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

scope = "https://management.azure.com/.default"
if spec.get("credential") == "default":
    cred = DefaultAzureCredential()
elif spec.get("client_id"):
    cred = ManagedIdentityCredential(client_id=spec["client_id"])
else:
    cred = ManagedIdentityCredential()
try:
    out["token"] = cred.get_token(scope).token
except Exception as err:  # reported, not raised: the test shows it
    out["token_error"] = f"{type(err).__name__}: {err}"

if spec.get("group") and "token" in out:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.resource.resources import ResourceManagementClient

    client = ResourceManagementClient(cred, spec["subscription"], base_url=spec["base_url"], credential_scopes=[scope])
    try:
        group = client.resource_groups.get(spec["group"])
        out["group"] = {
            "id": group.id, "name": group.name, "location": group.location,
            "provisioning_state": group.properties.provisioning_state if group.properties else None,
        }
    except HttpResponseError as err:
        out["group_error"] = {"status": err.status_code, "body": err.response.text()[:2000]}

if spec.get("probe_app_service") and os.environ.get("IDENTITY_ENDPOINT"):
    import requests

    endpoint, secret = os.environ["IDENTITY_ENDPOINT"], os.environ.get("IDENTITY_HEADER", "")
    params = {"api-version": "2019-08-01", "resource": "https://management.azure.com"}
    if spec.get("client_id"):
        params["client_id"] = spec["client_id"]

    def call(headers):
        res = requests.get(endpoint, params=params, headers=headers, timeout=30)
        return {"status": res.status_code, "body": res.text[:2000], "content_type": res.headers.get("content-type")}

    out["app_service"] = {
        "right": call({"X-IDENTITY-HEADER": secret}),
        "wrong": call({"X-IDENTITY-HEADER": secret + "x"}),
        "missing": call({}),
    }

print(json.dumps(out))
