#!/usr/bin/env bash
# Time from `paved up` to every service of dev healthy, after the build, on
# both runtimes of the local provider side by side: each run starts from an
# empty data directory (so it includes initdb, importing the demo images,
# building container images where they are not cached yet, and recording the
# specs), then `paved down`. Prints one figure per run as paved reports it.
#
#   bench/up.sh [RUNS] [RUNTIMES]   (default: 5 "process docker"; needs the
#                                    PostgreSQL server binaries, and a Docker
#                                    Engine for the docker runtime)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
runtimes="${2:-process docker}"
. bench/lib.sh
build paved-cli
paved="$BIN/paved"
for runtime in $runtimes; do
  for i in $(seq "$runs"); do
    data=$(mktemp -d)
    start=$(date +%s.%N)
    PAVED_RUNTIME="$runtime" PAVED_DATA_DIR="$data" "$paved" up >"$data.out"
    end=$(date +%s.%N)
    wall=$(awk "BEGIN{printf \"%.2f\", $end - $start}")
    reported=$(grep -o 'up and healthy after [0-9.]* s' "$data.out" | grep -o '[0-9.]* s')
    echo "$runtime run $i: up and healthy after $reported (wall $wall s)"
    result up "$runtime runtime, run $i: paved up to all healthy" "$reported (wall $wall s)"
    PAVED_DATA_DIR="$data" "$paved" down >/dev/null
    rm -rf "$data" "$data.out"
  done
done
