#!/usr/bin/env bash
# Time from `paved up` to every service of dev healthy, after the build:
# each run starts from an empty data directory (so it includes initdb of the
# platform PostgreSQL, importing the demo images and recording the specs),
# then `paved down`. Prints one figure per run as paved reports it.
#
#   bench/up.sh [RUNS]        (default 5; needs the PostgreSQL server binaries)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/paved/target}"
cargo build -q --release -p paved-cli
paved="$CARGO_TARGET_DIR/release/paved"
for i in $(seq "$runs"); do
  data=$(mktemp -d)
  start=$(date +%s.%N)
  PAVED_DATA_DIR="$data" "$paved" up >"$data.out"
  end=$(date +%s.%N)
  grep -o 'up and healthy after [0-9.]* s' "$data.out" | sed "s/^/run $i: /;s/\$/ (wall $(awk "BEGIN{printf \"%.2f\", $end - $start}") s)/"
  PAVED_DATA_DIR="$data" "$paved" down >/dev/null
  rm -rf "$data" "$data.out"
done
