# `helm test` of the akua-operator chart: the operator answers /healthz and the API server serves
# the AkuaCluster CRD. Standard library only; endpoints from the environment (defaults: in a pod).
import json
import os
import ssl
import sys
import time
import urllib.request
from typing import Any, NoReturn

health_url = os.environ["AKUA_TEST_HEALTH_URL"]
crd = os.environ.get("AKUA_TEST_CRD", "akuaclusters.akua.dev")
api = os.environ.get("AKUA_TEST_API_URL", "https://kubernetes.default.svc")
sa = os.environ.get("AKUA_TEST_SA_DIR", "/var/run/secrets/kubernetes.io/serviceaccount")
attempts = int(os.environ.get("AKUA_TEST_HEALTH_ATTEMPTS", "30"))


def fail(message: str) -> NoReturn:
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


# 1. The operator answers /healthz (tried every 2 s, 30 times by default: it may be starting).
last = ""
for attempt in range(attempts):
    if attempt:
        time.sleep(2)
    try:
        with urllib.request.urlopen(health_url, timeout=5) as rsp:  # noqa: S310 - http(s) URL
            print(f"ok: {health_url} answered {rsp.status}", flush=True)
            break
    except Exception as exc:  # noqa: BLE001 - any failure is retried, then reported
        last = f"{type(exc).__name__}: {exc}"
else:
    fail(f"the operator did not answer {health_url}: {last}")

# 2. The CRD is established and its group version lists the resource (the ServiceAccount's own
#    token: the operator may read this CRD, and discovery is open to every authenticated user).
with open(os.path.join(sa, "token")) as fh:
    token = fh.read().strip()
ctx = ssl.create_default_context(cafile=os.path.join(sa, "ca.crt"))


def get(path: str) -> Any:
    req = urllib.request.Request(api + path, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=10, context=ctx) as rsp:  # noqa: S310
            return json.load(rsp)
    except Exception as exc:  # noqa: BLE001
        fail(f"GET {path}: {type(exc).__name__}: {exc}")


obj = get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}")
conditions = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
if conditions.get("Established") != "True":
    fail(f"the CRD {crd} is not Established: {conditions}")
group, plural = obj["spec"]["group"], obj["spec"]["names"]["plural"]
for version in (v["name"] for v in obj["spec"]["versions"] if v.get("served")):
    resources = [r["name"] for r in get(f"/apis/{group}/{version}").get("resources", [])]
    if plural not in resources:
        fail(f"{group}/{version} does not serve {plural}: {resources}")
    print(f"ok: {group}/{version} serves {plural}", flush=True)
print("ok: the operator answers and the AkuaCluster CRD is served", flush=True)
