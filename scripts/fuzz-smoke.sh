#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time (default 60 s each).
#
#   scripts/fuzz-smoke.sh            # 60 s per target
#   scripts/fuzz-smoke.sh 30         # 30 s per target
#   FUZZ_TARGETS="decode" scripts/fuzz-smoke.sh 10
#
# Installs cargo-fuzz with `cargo install cargo-fuzz` when it is missing.
# cargo-fuzz needs nightly compiler flags (-Zsanitizer); with a stable toolchain
# RUSTC_BOOTSTRAP=1 unlocks them, which is what this script does unless
# FUZZ_TOOLCHAIN names a nightly toolchain to use instead (`cargo +nightly fuzz`).
# Exit status: non-zero when any target crashes; crashing inputs are left in
# fuzz/artifacts/<target>/ and can be replayed with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
# Not part of the default test run.
set -euo pipefail

secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi

if [[ -n "${FUZZ_TOOLCHAIN:-}" ]]; then
    fuzz=(cargo "+${FUZZ_TOOLCHAIN}" fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi

targets="${FUZZ_TARGETS:-$("${fuzz[@]}" list)}"
# Keep each input small (frames and messages are short here) and memory bounded.
opts=(-max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10)
jobs="${FUZZ_BUILD_JOBS:-}"
build_opts=()
[[ -n "$jobs" ]] && build_opts+=(--jobs "$jobs")

failed=()
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    echo "fuzz-smoke: $t for ${secs}s" >&2
    if ! "${fuzz[@]}" run "${build_opts[@]}" "$t" "fuzz/corpus/$t" -- "${opts[@]}"; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz-smoke: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: all targets ran ${secs}s without a crash" >&2
