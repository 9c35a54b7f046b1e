#!/usr/bin/env bash
# Benchmark: deploys into one GitOps repository on a real Git server
# (`git daemon` on 127.0.0.1). The example platform with its account's
# repository pointed at the server, services pinned by digest; then DEPLOYS
# deploys of api to eu-dev alternating two artifacts, so each one is a
# commit (record the deployment, make sure the digest is in the
# environment's registry — ECR's API on moto for the repository and the
# login, Debian's `docker-registry` on 127.0.0.1 standing in for the
# registry itself; the first deploy of each artifact pushes it — render the
# environment, fetch the branch, commit, push). Prints deploys per minute, the latency from `paved deploy`
# to its commit on the server (p50/p95/max), and the repository's size
# after them (as pushed, and after `git gc`). Not a test: timings never
# gate anything.
#
#   bench/gitops.sh               # 1,000 deploys
#   DEPLOYS=20 bench/gitops.sh
#
# Needs git, docker-registry and the test virtualenv's moto (scripts/test).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DEPLOYS="${DEPLOYS:-1000}"
py="${PAVED_TEST_PYTHON:-$HOME/.cache/paved/venv/bin/python}"
build paved-cli
paved="$BIN/paved"

work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "nothing listens on $1" >&2; exit 1; }

moto_port=$(free_port)
MOTO_IAM_LOAD_MANAGED_POLICIES=true "$py" crates/paved-cli/tests/support/moto_server.py -H 127.0.0.1 -p "$moto_port" >/dev/null 2>&1 &
pids+=($!)
registry_port=$(free_port)
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
  "$work/registry" "$registry_port" > "$work/registry.yml"
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
pids+=($!)
git init -q --bare -b main "$work/repos/deployments.git"
port=$(free_port)
git daemon --export-all --enable=receive-pack --reuseaddr --listen=127.0.0.1 --port="$port" \
  --base-path="$work/repos" "$work/repos" >/dev/null 2>&1 &
pids+=($!)
wait_port "$port"; wait_port "$registry_port"; wait_port "$moto_port"

export PAVED_DATA_DIR="$work/data" PAVED_STATE="sqlite://$work/state.db" PAVED_ACTOR=bench
mkdir -p "$work/specs/services"
sed "s|      roleArn: arn:aws:iam::123456789012:role/paved-provisioner|&\n  gitops:\n    repository: git://127.0.0.1:$port/deployments.git\n    branch: main\n    path: clusters|" \
  examples/platform/accounts.yaml > "$work/specs/accounts.yaml"
for f in examples/services/*.yaml; do
  sed -E 's#(image: [^:@]+):[0-9.]+#\1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef#' "$f" \
    > "$work/specs/services/$(basename "$f")"
done
"$paved" apply -f "$work/specs/accounts.yaml" -f examples/platform/blueprint-web-service-standard.yaml \
  -f examples/platform/teams.yaml -f examples/environments -f "$work/specs/services" >/dev/null
# The account's trust, as a platform engineer installs it once (moto's dummy root).
"$paved" account trust-policy aws-eu -o json > "$work/trust.json"
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=eu-central-1 "$py" - "$moto_port" "$work/trust.json" <<'PY'
import json, sys, boto3
setup = json.load(open(sys.argv[2]))
iam = boto3.client("iam", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}")
iam.create_open_id_connect_provider(Url=setup["oidc_provider"]["url"], ClientIDList=setup["oidc_provider"]["client_ids"])
iam.create_role(RoleName=setup["role_arn"].split("/")[-1], AssumeRolePolicyDocument=json.dumps(setup["trust_policy"]))
PY
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export PAVED_REGISTRY_ENDPOINTS="123456789012.dkr.ecr.eu-central-1.amazonaws.com=http://127.0.0.1:$registry_port"
digests=()
for v in v1 v2; do
  mkdir -p "$work/bundles/$v"
  echo '{"entrypoint": ["/bin/api"]}' > "$work/bundles/$v/bundle.json"
  echo "$v" > "$work/bundles/$v/RELEASE"
  digests+=("$("$paved" artifact push "$work/bundles/$v" --service api -o json |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("artifact", d).get("digest"))')")
done

: > "$work/latencies"
now_us() { echo "${EPOCHREALTIME/./}"; }
start=$(now_us)
for i in $(seq 1 "$DEPLOYS"); do
  t0=$(now_us)
  "$paved" deploy api --artifact "${digests[$((i % 2))]}" -e eu-dev >/dev/null
  echo $(( ($(now_us) - t0) / 1000 )) >> "$work/latencies"
done
total_ms=$(( ($(now_us) - start) / 1000 ))
commits=$(git --git-dir="$work/repos/deployments.git" rev-list --count main)
pushed_kib=$(du -sk "$work/repos/deployments.git" | cut -f1)
git --git-dir="$work/repos/deployments.git" gc -q
gc_kib=$(du -sk "$work/repos/deployments.git" | cut -f1)
read -r p50 p95 max < <(sort -n "$work/latencies" | awk '{a[NR]=$1} END {
  i = int(NR * 0.95); if (i < 1) i = 1; printf "%d %d %d\n", a[int((NR + 1) / 2)], a[i], a[NR]}')
rate=$(awk -v n="$DEPLOYS" -v ms="$total_ms" 'BEGIN {printf "%.0f", n * 60000 / ms}')
echo "gitops: $DEPLOYS deploys in ${total_ms} ms ($rate per minute), $commits commits; deploy -> commit pushed p50 ${p50} ms, p95 ${p95} ms, max ${max} ms; repository ${pushed_kib} KiB as pushed, ${gc_kib} KiB after git gc"
[ "$commits" -ge "$DEPLOYS" ] || { echo "expected a commit per deploy, got $commits" >&2; exit 1; }
result gitops "deploys into one repository ($DEPLOYS, each a commit)" "$rate per minute"
result gitops "deploy -> commit pushed, p50 / p95 / max" "$p50 / $p95 / $max ms"
result gitops "repository size after $DEPLOYS deploys" "$pushed_kib KiB as pushed, $gc_kib KiB after git gc"
