#!/usr/bin/env bash
# API load benchmark: N environments with M applied resources each in the
# store (SQLite by default), then C concurrent clients for D seconds per
# endpoint (list, get, describe) with `oha`. Prints p50, p99, requests/s and
# errors per endpoint, and the server's RSS idle and at its peak under load.
#
#   bench/api-load.sh                         # 10,000 envs × 10, 100 clients, 60 s each,
#                                             # then 2,500 req/s offered (RATE) per endpoint
#   ENVS=1000 DURATION=10s bench/api-load.sh  # a quick run
#   STATE=postgres://paved@127.0.0.1:5432/paved bench/api-load.sh
#
# Needs a release build (made here) and oha (installed from crates.io into
# ~/.cache/paved/tools when missing). Timings are printed, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVS="${ENVS:-10000}"
PER="${PER:-10}"
CLIENTS="${CLIENTS:-100}"
DURATION="${DURATION:-60s}"
RATE="${RATE:-2500}"
PORT="${PORT:-7499}"
tools="$HOME/.cache/paved/tools"
. bench/lib.sh

if ! command -v oha >/dev/null && [ ! -x "$tools/bin/oha" ]; then
  echo "== installing oha (crates.io) into $tools"
  cargo install --locked --root "$tools" oha >/dev/null
fi
OHA="$(command -v oha || echo "$tools/bin/oha")"

echo "== building paved ($PROFILE)"
build paved-cli
cargo build --profile "$PROFILE" -q -p paved-server --example seed_store
bin="$BIN"

data="$(mktemp -d)"
export PAVED_DATA_DIR="$data" PAVED_CONFIG_DIR="$data/config"
state="${STATE:-sqlite://$data/state.db}"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "kept $data"; else rm -rf "$data"; fi
}
trap cleanup EXIT

"$bin/paved" --state "$state" apply -f examples/ >/dev/null
cat <<YAML | "$bin/paved" --state "$state" apply -f - >/dev/null
apiVersion: paved.dev/v1alpha1
kind: RoleBinding
metadata: {name: bench-viewer}
spec: {role: viewer, subjects: ["serviceaccount:bench"], scope: organisation}
YAML
echo "== seeding $ENVS environments × $PER resources"
"$bin/examples/seed_store" "$state" "$ENVS" "$PER"
token="$("$bin/paved" --state "$state" token create bench --subject serviceaccount:bench -o json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')"

"$bin/paved" --state "$state" server --listen "127.0.0.1:$PORT" --rate-limit 1000000 --rate-burst 1000000 \
  >"$data/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/^'"$1"':/ {printf "%.0f MiB", $2/1024}' "/proc/$server_pid/status"; }
echo "== server RSS idle: $(rss VmRSS)"

mid=$(printf 'env-%05d' $((ENVS / 2)))
# Closed loop (CLIENTS always waiting): throughput, with `whoami` (token check
# only) as the ceiling the others are compared with. Open loop (RATE requests/s
# offered whatever the answers take): latency at a load the server can carry.
oha_json() { # NAME PATH [oha options…]
  local name=$1 path=$2; shift 2
  # -w: requests still running at the deadline finish and count (not "aborted" errors).
  "$OHA" -z "$DURATION" -w --no-tui --output-format json "$@" \
    -H "Authorization: Bearer $token" "http://127.0.0.1:$PORT$path" >"$data/$name.json"
}
report() { # LOOP NAME PATH
  python3 - "$@" "$data/$2.json" "$data/whoami.json" <<'PY'
import json, sys
loop, name, path, file, ceiling = sys.argv[1:6]
name = name.removeprefix("open-")
r = json.load(open(file))
p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
errors = sum(v for k, v in codes.items() if not k.startswith("2")) + sum(r.get("errorDistribution", {}).values())
rps = r["summary"]["requestsPerSec"]
share = ""
if loop == "closed" and name != "whoami":
    share = f"{100 * rps / json.load(open(ceiling))['summary']['requestsPerSec']:.0f} %"
print(f"{loop:<7} {name:<9} {path:<46} {p['p50']*1000:8.2f} {p['p99']*1000:8.2f} {rps:9.0f} {share:>6} {errors:7d}")
if errors:
    print(f"{'':17} status codes {codes}, errors {r.get('errorDistribution', {})}")
figure = f"{rps:,.0f} req/s" + (f" ({share} of whoami)" if share else "") if loop == "closed" else f"p99 {p['p99']*1000:.2f} ms"
print(f"RESULT\tapi\t{loop} loop, {name}\t{figure}" + (f", {errors} errors" if errors else ""))
PY
}
endpoints=("whoami:/api/v1/whoami" "list:/api/v1/environments?limit=50" "get:/api/v1/specs/environment/$mid"
  "describe:/api/v1/environments/$mid")
printf '%-7s %-9s %-46s %8s %8s %9s %6s %7s\n' loop endpoint path p50_ms p99_ms req/s whoami errors
for spec in "${endpoints[@]}"; do
  name="${spec%%:*}"; path="${spec#*:}"
  oha_json "$name" "$path" -c "$CLIENTS"
  report closed "$name" "$path"
done
for spec in "${endpoints[@]:1}"; do
  name="${spec%%:*}"; path="${spec#*:}"
  oha_json "open-$name" "$path" -c "$CLIENTS" -q "$RATE" --latency-correction
  report "open@$RATE" "open-$name" "$path"
done
echo "== server RSS after load: $(rss VmRSS), peak $(rss VmHWM)"
