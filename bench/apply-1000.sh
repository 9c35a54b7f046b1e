#!/usr/bin/env bash
# Benchmark: validate and apply 1,000 Score services and 20 environments
# (plus the example blueprint, accounts and teams) into a fresh SQLite store,
# then apply again (nothing changed). Prints wall time and peak memory of
# each step. Not a test: timings never gate anything.
#
#   bench/apply-1000.sh            # SQLite (embedded default)
#   STATE=postgres://... bench/apply-1000.sh
#   SERVICES=20 bench/apply-1000.sh # fewer services
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SERVICES="${SERVICES:-1000}"
build paved-cli
paved="$BIN/paved"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/specs/services" "$work/specs/environments"
cp -r examples/platform "$work/specs/"
for i in $(seq -w 1 20); do
  types=(development staging production development)
  cat > "$work/specs/environments/env-$i.yaml" <<YAML
apiVersion: paved.dev/v1alpha1
kind: Environment
metadata:
  name: bench-$i
spec:
  blueprint: web-service-standard@1.2.0
  account: aws-eu
  region: eu-west-1
  type: ${types[$((10#$i % 4))]}
  owner: platform
  parameters:
    replicas: $((10#$i % 5 + 1))
YAML
done
for i in $(seq -w 1 "$SERVICES"); do
  cat > "$work/specs/services/svc-$i.score.yaml" <<YAML
apiVersion: score.dev/v1b1
metadata:
  name: svc-$i
  annotations:
    paved.dev/owner: payments
service:
  ports:
    http:
      port: 80
      targetPort: 8080
containers:
  main:
    image: registry.example.com/bench/svc-$i:1.0.0
    variables:
      DATABASE_URL: postgres://\${resources.db.username}:\${resources.db.password}@\${resources.db.host}:\${resources.db.port}/\${resources.db.name}
      SERVICE: \${metadata.name}
    readinessProbe:
      httpGet:
        path: /ready
        port: 8080
resources:
  db:
    type: postgres
YAML
done
state="${STATE:-sqlite://$work/state.db}"
files=$(find "$work/specs" -name '*.yaml' | wc -l)
echo "specs: $files files ($(du -sh "$work/specs" | cut -f1)), state: ${state%%://*}"

measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out" 2>&1 || { cat "$work/out"; exit 1; }
  read -r secs kb < "$work/time"
  printf '%-28s %7.2f s  %7.1f MiB peak RSS   %s\n' "$label" "$secs" "$(awk "BEGIN{print $kb/1024}")" "$(tail -n1 "$work/out")"
  result apply "${state%%://*}: $label ($files files)" "$secs s, $(awk "BEGIN{printf \"%.0f\", $kb/1024}") MiB"
}
measure "validate (empty state)" "$paved" --state "$state" validate -f "$work/specs"
measure "apply (first, all created)" "$paved" --state "$state" apply -f "$work/specs"
measure "apply (again, unchanged)" "$paved" --state "$state" apply -f "$work/specs"
measure "validate (against state)" "$paved" --state "$state" validate -f "$work/specs"
measure "get services ($SERVICES rows)" "$paved" --state "$state" get services
