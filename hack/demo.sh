#!/usr/bin/env bash
# make demo: the whole life of an AkuaCluster on this machine, with nothing to install by hand
# beyond Python 3.11 and Go (for the control-plane binaries, built once and cached).
#
#   1. what it needs: the control-plane binaries (hack/testbin/build.sh; `make demo` already ran
#      `make venv` for the Python side)
#   2. a local Kubernetes control plane (etcd + kube-apiserver, hack/controlplane.py)
#   3. the Akua API simulator (akua-sim) on a free loopback port
#   4. the operator, as users run it: akua-operator run --namespace akua-demo
#   5. an AkuaCluster applied with kubectl (name + regionId: the operator creates the Akua
#      cluster), watched with `kubectl get akc -w` until Ready
#   6. kubectl delete, while `kubectl get akc -w` shows the delete operation's steps advancing
#   7. everything stopped and removed again, also on Ctrl-C or an error
#
# Environment knobs (all optional):
#   DEMO_MODE=create|adopt   create a new Akua cluster (default), or adopt one seeded in the simulator
#   DEMO_STEP_SECONDS=6      how long each simulated Akua operation step takes (the operator reads
#                            an operation at most once per 5 s: shorter steps may go unseen)
#   DEMO_KEEP=1              keep the work directory (logs, kubeconfig) after the demo
#   AKUA_TESTBIN=DIR         use these control-plane binaries instead of hack/testbin/build.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${DEMO_MODE:-create}"
STEP_SECONDS="${DEMO_STEP_SECONDS:-6}"
NS=akua-demo
NAME=demo
TOKEN=sk_akua_test

case "$MODE" in create | adopt) ;; *)
    echo "demo: DEMO_MODE must be create or adopt, got '$MODE'" >&2
    exit 2
    ;;
esac

if [[ -t 1 ]]; then BOLD=$'\033[1m' DIM=$'\033[2m' RESET=$'\033[0m'; else BOLD='' DIM='' RESET=''; fi
PHASE=0
phase() {
    PHASE=$((PHASE + 1))
    printf '\n%s==> [%d/7] %s%s\n' "$BOLD" "$PHASE" "$*" "$RESET"
}
say() { printf '    %s\n' "$*"; }
run() { # show a command, then run it with indented output
    printf '    %s$ %s%s\n' "$DIM" "$*" "$RESET"
    "$@" 2>&1 | sed -u 's/^/    /'
}
die() {
    printf '\ndemo: FAILED: %s\n' "$*" >&2
    exit 1
}

VENV_BIN="$REPO/.venv/bin"
[[ -x "$VENV_BIN/akua-operator" ]] || die "$VENV_BIN/akua-operator is missing: run 'make venv' (or use 'make demo')"
export PATH="$VENV_BIN:$PATH"
PY="$VENV_BIN/python"

# ----------------------------------------------------------------------------- cleanup
WORK=""
PIDS=()  # process-group leaders we started (setsid), stopped in reverse order
NAMES=()
CLEANED=0
cleanup() {
    local status=$?
    [[ $CLEANED == 1 ]] && return
    CLEANED=1
    trap - INT TERM
    set +e
    if ((${#PIDS[@]})); then
        printf '\n%s==> cleaning up%s\n' "$BOLD" "$RESET"
    fi
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[i]}"
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do # up to 20 s: the control plane stops kube-apiserver, then etcd
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL -- "-$pid" 2>/dev/null
            say "stopped ${NAMES[i]} (pid $pid) with SIGKILL"
        else
            say "stopped ${NAMES[i]} (pid $pid)"
        fi
        wait "$pid" 2>/dev/null
    done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ "${DEMO_KEEP:-}" == 1 ]]; then
            say "kept $WORK (logs, kubeconfig)"
        else
            rm -rf "$WORK"
            say "removed $WORK"
        fi
    fi
    exit "$status"
}
on_signal() {
    printf '\ndemo: interrupted (%s)\n' "$1" >&2
    exit 130
}
trap cleanup EXIT
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM

# start NAME LOG CMD...: run CMD in its own process group (so cleanup can stop it and all its
# children at once), output to LOG ('-' for our stdout).
start() {
    local name="$1" log="$2"
    shift 2
    if [[ "$log" == - ]]; then
        setsid "$@" &
    else
        setsid "$@" >"$log" 2>&1 &
    fi
    PIDS+=("$!")
    NAMES+=("$name")
    LAST_PID=$!
}
forget_last() {
    local n=$((${#PIDS[@]} - 1))
    unset "PIDS[$n]" "NAMES[$n]"
}
stop_last() { # stop the most recently started process group (a watch)
    kill -TERM -- "-${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
    forget_last
}
# await NAME LOG CMD...: like start, then wait for it. Waiting on a background job keeps Ctrl-C
# responsive, and its own process group lets cleanup stop it if we are interrupted meanwhile.
await() {
    local rc=0
    start "$@"
    wait "$LAST_PID" || rc=$?
    forget_last
    return "$rc"
}
alive() { kill -0 "$1" 2>/dev/null; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_ok() { "$PY" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null; }
# wait_until WHAT TIMEOUT PID LOG CMD...: poll CMD; fail with LOG's tail if PID dies or time is up.
wait_until() {
    local what="$1" timeout="$2" pid="$3" log="$4"
    shift 4
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if ! alive "$pid"; then
            tail -n 30 "$log" | sed 's/^/    | /' >&2
            die "$what: the process exited (log above, full log $log)"
        fi
        ((SECONDS < deadline)) || {
            tail -n 30 "$log" | sed 's/^/    | /' >&2
            die "$what: not ready after ${timeout}s"
        }
        sleep 0.2
    done
}

START=$SECONDS

# ----------------------------------------------------------------------------- 1. binaries
phase "Setting up: Python venv (done by 'make venv') and the control-plane binaries"
say "hack/testbin/build.sh builds kube-apiserver, etcd, kubectl and helm from Go modules"
say "(the first time takes several minutes; afterwards they come from ~/.cache/akua-operator)"
if [[ -n "${AKUA_TESTBIN:-}" ]]; then # already built (make test, the test suite)
    for bin in etcd kube-apiserver kubectl helm; do
        [[ -x "$AKUA_TESTBIN/$bin" ]] || die "AKUA_TESTBIN=$AKUA_TESTBIN has no $bin; unset it to build"
    done
    TESTBIN="$AKUA_TESTBIN"
else
    TESTBIN="$("$REPO/hack/testbin/build.sh" | tail -n1)" ||
        die "hack/testbin/build.sh failed (output above)"
fi
export AKUA_TESTBIN="$TESTBIN"
export PATH="$TESTBIN:$PATH"
say "binaries: $TESTBIN"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/akua-demo.XXXXXX")"
say "work directory (logs, kubeconfig): $WORK"

# ----------------------------------------------------------------------------- 2. control plane
phase "Starting a local Kubernetes control plane (etcd + kube-apiserver)"
start controlplane "$WORK/controlplane.log" "$PY" "$REPO/hack/controlplane.py" up --dir "$WORK/controlplane"
say "started controlplane: pid $LAST_PID, log $WORK/controlplane.log"
export KUBECONFIG="$WORK/controlplane/kubeconfig"
wait_until "control plane" 90 "$LAST_PID" "$WORK/controlplane.log" test -s "$KUBECONFIG"
run kubectl version
say "KUBECONFIG=$KUBECONFIG"

# ----------------------------------------------------------------------------- 3. simulator
phase "Starting the Akua API simulator (steps take ${STEP_SECONDS}s)"
SIM_PORT="$(free_port)"
export AKUA_API_URL="http://127.0.0.1:$SIM_PORT/v1"
export AKUA_TOKEN="$TOKEN"
start akua-sim "$WORK/akua-sim.log" akua-sim --host 127.0.0.1 --port "$SIM_PORT" \
    --token "$TOKEN" --step-seconds "$STEP_SECONDS" --log-level warning --validate-responses
say "started akua-sim: pid $LAST_PID, log $WORK/akua-sim.log"
wait_until "akua-sim" 30 "$LAST_PID" "$WORK/akua-sim.log" http_ok "http://127.0.0.1:$SIM_PORT/_sim/health"
say "Akua API: $AKUA_API_URL (token $TOKEN)"

# ----------------------------------------------------------------------------- 4. operator
phase "Starting the operator: akua-operator run --namespace $NS"
HEALTH_PORT="$(free_port)"
METRICS_PORT="$(free_port)"
run kubectl apply --server-side -f "$REPO/charts/akua-operator/files/crds/akuaclusters.akua.dev.yaml"
run kubectl wait --for=condition=Established crd/akuaclusters.akua.dev --timeout=60s
run kubectl create namespace "$NS"
say "environment: KUBECONFIG, AKUA_API_URL, AKUA_TOKEN (see docs/configuration.md)"
AKUA_HEALTH_PORT="$HEALTH_PORT" AKUA_METRICS_PORT="$METRICS_PORT" AKUA_WAIT_TIMEOUT=1 \
    AKUA_OBSERVE_INTERVAL=30 AKUA_BACKOFF_BASE=0.5 AKUA_BACKOFF_CAP=5 PYTHONUNBUFFERED=1 \
    start akua-operator "$WORK/operator.log" akua-operator run --namespace "$NS"
OPERATOR_PID=$LAST_PID
say "started akua-operator: pid $OPERATOR_PID, log $WORK/operator.log"
wait_until "akua-operator" 60 "$OPERATOR_PID" "$WORK/operator.log" http_ok "http://127.0.0.1:$HEALTH_PORT/healthz"
say "liveness http://127.0.0.1:$HEALTH_PORT/healthz, metrics http://127.0.0.1:$METRICS_PORT/metrics"

# ----------------------------------------------------------------------------- 5. create
if [[ "$MODE" == create ]]; then
    phase "Creating an AkuaCluster: the operator creates the Akua cluster"
    SPEC="  name: demo-cluster
  regionId: reg_sim"
else
    phase "Adopting an existing Akua cluster with an AkuaCluster"
    say "DEMO_MODE=adopt: a cluster is seeded in the simulator first, then adopted by its id"
    CLUSTER_ID="$("$PY" -c '
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=json.dumps({"name": "demo-cluster"}).encode(),
                             headers={"content-type": "application/json"}, method="POST")
print(json.load(urllib.request.urlopen(req, timeout=10))["id"])' "http://127.0.0.1:$SIM_PORT/_sim/clusters")"
    say "seeded Akua cluster $CLUSTER_ID"
    SPEC="  clusterId: $CLUSTER_ID"
fi
MANIFEST="apiVersion: akua.dev/v1alpha1
kind: AkuaCluster
metadata:
  name: $NAME
  namespace: $NS
spec:
$SPEC"
printf '%s\n' "$MANIFEST" | sed 's/^/    | /'
say "watching with: kubectl get akc -n $NS -w  (the OPERATION column is the progress)"
start watch - bash -c "kubectl get akc -n '$NS' -w 2>&1 | sed -u 's/^/    /'"
printf '%s\n' "$MANIFEST" | kubectl apply -f - | sed 's/^/    /'
await "kubectl wait" "$WORK/wait.out" kubectl wait --for=condition=Ready "akc/$NAME" -n "$NS" --timeout=120s ||
    die "the AkuaCluster did not become Ready (operator log: $WORK/operator.log)"
sleep 0.5 # let the watch print the last row
stop_last
CLUSTER_ID="$(kubectl get akc "$NAME" -n "$NS" -o jsonpath='{.status.clusterId}')"
STEPS="$(kubectl get akc "$NAME" -n "$NS" -o jsonpath='{range .status.operation.steps[*]}{.name}{" "}{.status}{"\n"}{end}')"
say ""
say "Ready: the AkuaCluster manages Akua cluster $CLUSTER_ID."
if [[ -n "$STEPS" ]]; then
    say "the steps of the create operation, as mirrored in status.operation.steps:"
    printf '%s\n' "$STEPS" | sed 's/^/      /'
fi

# ----------------------------------------------------------------------------- 6. delete
phase "Deleting it: kubectl delete waits while the operator deletes the Akua cluster"
say "the finalizer akua.dev/finalizer holds the resource until Akua's delete operation has ended"
start watch - bash -c "kubectl get akc -n '$NS' -w 2>&1 | sed -u 's/^/    /'"
sleep 0.5
DELETE_START=$SECONDS
printf '    %s$ kubectl delete akc %s -n %s%s\n' "$DIM" "$NAME" "$NS" "$RESET"
await "kubectl delete" "$WORK/delete.out" kubectl delete akc "$NAME" -n "$NS" --timeout=120s ||
    die "kubectl delete failed: $(cat "$WORK/delete.out")"
sleep 0.5
stop_last
sed 's/^/    /' "$WORK/delete.out"
say "kubectl delete returned after $((SECONDS - DELETE_START))s"
say ""
say "the Events the operator recorded on the way (kubectl get events -n $NS):"
kubectl get events -n "$NS" --field-selector "involvedObject.name=$NAME" -o json | "$PY" -c '
import json, sys
events = sorted(json.load(sys.stdin)["items"], key=lambda e: int(e["metadata"]["resourceVersion"]))
for e in events:  # in the order they were recorded
    print("      %-16s %s" % (e["reason"], e["message"]))'
CODE="$("$PY" -c '
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"authorization": "Bearer " + sys.argv[2]})
try:
    print(urllib.request.urlopen(req, timeout=10).status)
except urllib.error.HTTPError as err:
    print(err.code)' "$AKUA_API_URL/clusters/$CLUSTER_ID" "$TOKEN")"
[[ "$CODE" == 404 ]] || die "the Akua cluster $CLUSTER_ID still exists (GET answered $CODE)"
say ""
say "Akua API: GET /clusters/$CLUSTER_ID answers 404: the cluster is gone"
# The simulator checked every answer it gave against the Akua contract (openapi.json).
BROKEN="$("$PY" -c '
import json, sys, urllib.request
print(len(json.load(urllib.request.urlopen(sys.argv[1], timeout=10))["data"]))' \
    "http://127.0.0.1:$SIM_PORT/_sim/violations")"
[[ "$BROKEN" == 0 ]] || die "akua-sim sent $BROKEN answer(s) that break the contract (GET /_sim/violations)"
say "akua-sim: every answer matched the Akua contract (0 violations)"

# ----------------------------------------------------------------------------- 7. done
phase "Done in $((SECONDS - START))s; stopping everything"
say "next: README.md (Helm install on a real cluster), docs/troubleshooting.md"
