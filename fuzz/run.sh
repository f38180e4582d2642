#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 15; CI uses the default), after installing
# the pinned cargo-fuzz into target/tools when it is missing. A crash fails the run and leaves
# its input in fuzz/artifacts/TARGET/ (reproduce: see fuzz/README.md).
#
#   fuzz/run.sh            # every target, 15 s each
#   fuzz/run.sh 600        # by hand: 10 minutes each
#   fuzz/run.sh 60 cursor  # one target
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-15}"
shift || true
CARGO_FUZZ_VERSION=0.13.2
tools="$PWD/target/tools"

if [ "$("$tools/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"
# cargo-fuzz passes nightly-only flags (-Z, sanitizer-coverage); the one stable toolchain here
# accepts them with this. Set for these cargo calls only.
export RUSTC_BOOTSTRAP=1

# No sanitizer: our crates forbid `unsafe`, so AddressSanitizer would watch only the
# dependencies' unsafe code, for a longer build and slower runs. A dev build (no
# optimisation; debug assertions and overflow checks on): the instrumented release build of
# these crates' dependencies takes about twice the CPU time, too long for CI. Figures in
# fuzz/README.md.
build_flags=(--sanitizer none --dev)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build "${build_flags[@]}"

summary=()
for target in "${targets[@]}"; do
    # New inputs go to the first directory (not committed); the seeds are only read.
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    log="fuzz/target/$target.log"
    echo "== $target: ${seconds} s"
    if ! cargo fuzz run "${build_flags[@]}" "$target" "$corpus" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target failed: its input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log")
    summary+=("$target: ${runs:-?} executions in ${seconds} s")
done
printf '%s\n' "${summary[@]}"
