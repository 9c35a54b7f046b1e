# Shared by the benchmark scripts (sourced, not run).
#
# PAVED_BENCH_PROFILE picks the build: `release` (the default, for figures)
# or `dev` (bench/all --quick: the debug build the tests already made, for
# checking that a benchmark still runs). `result BENCH FIGURE VALUE` prints
# the line bench/all collects into its table.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/paved/target}"
PROFILE="${PAVED_BENCH_PROFILE:-release}"
if [ "$PROFILE" = dev ]; then BIN="$CARGO_TARGET_DIR/debug"; else BIN="$CARGO_TARGET_DIR/$PROFILE"; fi

# Builds the packages named (and their binaries) with the chosen profile.
build() {
  local args=()
  for p in "$@"; do args+=(-p "$p"); done
  cargo build -q --profile "$PROFILE" "${args[@]}"
}

result() { printf 'RESULT\t%s\t%s\t%s\n' "$1" "$2" "$3"; }
