#!/usr/bin/env bash
# Fuzzes the HTTP API from its own /openapi.json with schemathesis for SECONDS (default 60),
# against `identityd dev` (SQLite, the built-in WeChat simulator) on free ports in a temporary
# directory. hooks.py gives most requests real codes and tokens from the simulator, so login,
# refresh and the /v1/me routes are reached in their success paths, not only their refusals.
# Fails on any 5xx and on any answer the document does not describe (status, content type,
# headers, body schema). Schemathesis is installed, pinned (requirements.txt), into a venv
# under target/tools on first use.
#
#   tests/schemathesis/run.sh        # CI: 60 s
#   tests/schemathesis/run.sh 600    # by hand, longer
#   tests/schemathesis/run.sh 30 --include-path /v1/me   # further arguments go to schemathesis
#
# IDENTITYD_BIN names the binary (default target/debug/identityd, built when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
seconds="${1:-60}"
shift || true
here="$root/tests/schemathesis"

venv="$root/target/tools/schemathesis"
if ! cmp -s "$here/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    cp "$here/requirements.txt" "$venv/requirements.txt"
fi

bin="${IDENTITYD_BIN:-$root/target/debug/identityd}"
if [ ! -x "$bin" ]; then
    cargo build -p api --bin identityd
fi

work="$(mktemp -d)"
service_pid=""
cleanup() {
    if [ -n "$service_pid" ]; then
        kill "$service_pid" 2>/dev/null || true
        wait "$service_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

appid=wxd000000000000001 # dev mode's first demo app
admin_token="fuzz_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cloud_secret="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
push_token="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# All the fuzzer's requests come from one address: the per-client login and failed-auth
# budgets would turn most of the run into 429s and hide the routes behind them.
(
    cd "$work"
    IDENTITY_LISTEN=127.0.0.1:0 \
        IDENTITY_ADMIN_TOKEN="$admin_token" \
        IDENTITY_CLOUD_LOGIN_SECRETS="$appid:$cloud_secret" \
        IDENTITY_PUSH_TOKENS="$appid:$push_token" \
        IDENTITY_LOGIN_RATE_PER_MINUTE=0 \
        IDENTITY_AUTH_FAILURES_PER_MINUTE=0 \
        RUST_LOG="${RUST_LOG:-warn}" \
        exec "$bin" dev --sim-listen 127.0.0.1:0
) >"$work/service.log" 2>&1 &
service_pid=$!

# dev prints both addresses once it serves.
service="" sim=""
for _ in $(seq 1 300); do
    service="$(sed -nE 's|^identityd dev is running on (http://[^ ]+).*|\1|p' "$work/service.log")"
    sim="$(sed -nE 's|^WeChat simulator: (http://[^ ]+).*|\1|p' "$work/service.log")"
    [ -n "$service" ] && [ -n "$sim" ] && break
    kill -0 "$service_pid" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$service" ] || [ -z "$sim" ]; then
    cat "$work/service.log"
    echo "identityd dev did not start" >&2
    exit 1
fi
echo "fuzzing $service (simulator $sim) for ${seconds} s"

tally="$work/tally.json"
status=0
# /v1/events/stream is left out: it is an endless Server-Sent Events response, which a
# request/response fuzzer can only time out on (its refusals are covered by the test suite).
# From the temporary directory: schemathesis keeps its caches in the working directory.
(cd "$work" && PYTHONPATH="$here" SCHEMATHESIS_HOOKS=hooks \
    FUZZ_SERVICE="$service" FUZZ_SIM="$sim" FUZZ_ADMIN_TOKEN="$admin_token" \
    FUZZ_APPIDS="$appid,wxd000000000000002" FUZZ_CLOUD_SECRET="$cloud_secret" \
    FUZZ_PUSH_TOKEN="$push_token" FUZZ_TALLY="$tally" \
    "$venv/bin/schemathesis" run "$service/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-path /v1/events/stream \
    --max-time "$seconds" \
    --workers 1 \
    --request-timeout 10 \
    --no-color \
    --suppress-health-check all \
    --output-sanitize true "$@") || status=$?

if ! kill -0 "$service_pid" 2>/dev/null; then
    echo "identityd exited during the run:" >&2
    tail -n 50 "$work/service.log" >&2
    status=1
fi
if grep -q "panicked" "$work/service.log"; then
    grep -B2 -A10 "panicked" "$work/service.log" >&2
    echo "identityd panicked during the run" >&2
    status=1
fi

# Coverage: requests per operation and status (2xx: the success path was reached).
python3 - "$tally" <<'EOF'
import collections, json, sys
try:
    tally = json.load(open(sys.argv[1]))
except FileNotFoundError:
    sys.exit("no tally: the hooks did not run")
ops = collections.defaultdict(dict)
for key, n in tally.items():
    method, path, status = key.split(" ")
    ops[f"{method} {path}"][status] = n
print(f"{sum(tally.values())} requests")
probes = [op for op, statuses in ops.items() if set(statuses) == {"405"}]
print(f"  ({len(probes)} probes of undocumented methods, all answered 405)")
for op in sorted(set(ops) - set(probes)):
    statuses = " ".join(f"{s}x{n}" for s, n in sorted(ops[op].items()))
    print(f"  {op:52} {statuses}")
EOF
exit "$status"
