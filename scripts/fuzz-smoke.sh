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
# Inputs up to 4 MiB (a full frame), so claims can meet real data; memory
# bounded well below what an unbounded decoder would take for such inputs
# (an array of 4 M nils is 160 MB as a value tree: the decode limits allow
# 33 MB).
opts=(-max_total_time="$secs" -max_len=4194304 -rss_limit_mb=768 -timeout=10)

# Structure-aware seeds: extreme claimed lengths, deep nesting, huge strings.
seed() {
    python3 - "$1" <<'PY'
import os, struct, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
def put(name, data):
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)
M = 1 << 20
put("array-claims-4G", b"\xdd" + struct.pack(">I", 0xFFFFFFFF) + b"\xc0" * M)
put("array-claims-its-nils", b"\xdd" + struct.pack(">I", M) + b"\xc0" * M)
put("map-claims-4G", b"\xdf" + struct.pack(">I", 0xFFFFFFFF) + b"\xa1k\xc0" * (M // 3))
put("str-claims-4G", b"\xdb" + struct.pack(">I", 0xFFFFFFFF) + b"x" * 64)
put("bin-claims-4G", b"\xc6" + struct.pack(">I", 0xFFFFFFFF) + b"\x00" * 64)
put("str-of-3MiB", b"\xdb" + struct.pack(">I", 3 * M) + b"x" * (3 * M))
put("nested-100k", b"\x91" * 100000 + b"\xc0")
put("nested-maps", b"\x81\xa1k" * 30000 + b"\xc0")
put("ints-32bit", b"\xdd" + struct.pack(">I", M // 5) + b"\xce\x00\x01\x11\x70" * (M // 5))
PY
}

jobs="${FUZZ_BUILD_JOBS:-}"
build_opts=()
[[ -n "$jobs" ]] && build_opts+=(--jobs "$jobs")

failed=()
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    seed "fuzz/corpus/$t"
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
