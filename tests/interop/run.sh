#!/usr/bin/env bash
# Fed-BioMed interoperability scenarios (issue 8). Loopback only; every process
# is bounded by `timeout`; ports are picked free at run time.
#
#   tests/interop/run.sh                 # all scenarios
#   tests/interop/run.sh self bytes      # some of them: self node node-lib researcher bytes reconnect
#
# Scenarios:
#   self        Fed-BioMed researcher (fbm_researcher.py) <-> Fed-BioMed node (fbm_node.py):
#               proves the harness itself (restart keeps the certificate: a Fed-BioMed
#               node never re-fetches it, see FEDBIOMED_FACTS.md 3.2)
#   node        `fedroute node` <-> Fed-BioMed researcher: ping, search, list, approval
#               -> error, 16 MiB TrainRequest -> ErrorMessage, logs as Feedback,
#               researcher restarted with its certificate (as Fed-BioMed keeps it)
#   regen       `fedroute node` <-> Fed-BioMed researcher restarted with a REGENERATED
#               certificate (same id): refused by default (the node's trust store),
#               served with --trust-same-id (issue 14)
#   node-lib    the same against fedroute's node library (crates/fedroute/tests/it/interop/node.rs): tells a
#               CLI problem from a library one
#   researcher  fedroute researcher (library, crates/fedroute/tests/it/interop/researcher.rs) <-> Fed-BioMed node:
#               ping, search, 16 MiB each way, Feedback logs, node restarted
#   bytes       fedroute's typed messages <-> Fed-BioMed's Message.from_dict, both ways
#   reconnect   `fedroute node` <-> Fed-BioMed researcher killed and restarted on the same
#               port with its certificate after outages of 0.5, 2 and 10 s (5 each): the
#               node polls within 200 ms of the researcher listening again (issue 19)
#
# Environment: CARGO_TARGET_DIR (default ./target), FEDROUTE_BIN (skip the build
# and use this binary), INTEROP_KEEP=1 (keep the work dir with every log).
# Prints PASS/FAIL per scenario and 'N passed, N failed'; exits non-zero on any failure.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

ALL=(self node node-lib researcher bytes reconnect regen)
if [ $# -gt 0 ]; then SCENARIOS=("$@"); else SCENARIOS=("${ALL[@]}"); fi
for s in "${SCENARIOS[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) echo "interop: unknown scenario '$s' (known: ${ALL[*]})" >&2; exit 2 ;; esac
done

say() { echo "interop: $*" >&2; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fedroute-interop.XXXXXX")"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  if [ "${INTEROP_KEEP:-0}" = "1" ]; then say "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the Python side ---------------------------------------------------------------------------
VENV="$(timeout 1800 "$HERE/setup.sh")" || { say "setup.sh failed"; echo "0 passed, ${#SCENARIOS[@]} failed"; exit 1; }
PY="$VENV/bin/python"
export PYTHONPATH="$HERE/stubs"
export GRPC_VERBOSITY="${GRPC_VERBOSITY:-ERROR}"
export PYTHONUNBUFFERED=1

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

# The last JSON line of a program's stdout, or {} when there is none.
result_of() { grep '^{' "$1" 2>/dev/null | tail -n 1 || true; }
json_field() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[1] or "{}"); print(d.get(sys.argv[2], ""))' "$1" "$2"; }

show_logs() { # dir: print the tail of each log for a failed scenario
  local f
  for f in "$1"/*; do
    [ -f "$f" ] || continue
    echo "----- $(basename "$f") (last 40 lines)" >&2
    grep -v -E '^\s*$' "$f" | tail -n 40 >&2
  done
}

# --- the Rust side -----------------------------------------------------------------------------
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${FEDROUTE_BIN:-}"
need_rust() {
  for s in "${SCENARIOS[@]}"; do [ "$s" != self ] && return 0; done
  return 1
}
if need_rust && [ -z "$BIN" ]; then
  say "building fedroute (cargo build --release; CARGO_TARGET_DIR=$TARGET)"
  if ! timeout 2400 cargo build --release --quiet --bin fedroute >"$WORK/cargo-build.log" 2>&1; then
    tail -n 40 "$WORK/cargo-build.log" >&2
    say "cargo build --release failed"
    echo "0 passed, ${#SCENARIOS[@]} failed"
    exit 1
  fi
  BIN="$TARGET/release/fedroute"
fi

# The ignored tests of module interop in crates/fedroute/tests/it (test target "it").
interop_test() { # test-name, log; env passed through
  RUST_BACKTRACE=0 timeout 900 cargo test --release --quiet -p fedroute --test it -- --ignored --exact "interop::$1" --nocapture >"$2" 2>&1
}

# --- scenarios ---------------------------------------------------------------------------------

scenario_self() {
  local d="$WORK/self" port
  mkdir -p "$d"; port="$(free_port)"
  timeout 300 "$PY" "$HERE/fbm_researcher.py" --port "$port" --node-id NODE_fbm \
    --expect-dataset cohort --search-tag '#a' --train-mib 16 --train-expect echo \
    --restart-cert same --timeout 280 >"$d/researcher.out" 2>"$d/researcher.err" &
  local rpid=$!; PIDS+=("$rpid")
  timeout 300 "$PY" "$HERE/fbm_node.py" --researcher "127.0.0.1:$port" --id NODE_fbm \
    --dataset 'cohort:#a,#b' --dataset 'other:#c' --timeout 290 >"$d/node.out" 2>"$d/node.err" &
  local npid=$!; PIDS+=("$npid")
  wait "$rpid"; local rc=$?
  kill "$npid" 2>/dev/null; wait "$npid" 2>/dev/null
  local res; res="$(result_of "$d/researcher.out")"
  say "self: $(json_field "$res" passed) checks passed, $(json_field "$res" failed) failed"
  [ "$rc" = 0 ] && [ "$(json_field "$res" ok)" = True ] || { show_logs "$d"; return 1; }
}

scenario_node() {
  local d="$WORK/node" port
  mkdir -p "$d"; port="$(free_port)"
  if ! timeout 20 "$BIN" node --help >/dev/null 2>&1; then
    say "node: '$BIN node' is not available (the CLI sub-command is missing)"; return 1
  fi
  timeout 300 "$PY" "$HERE/fbm_researcher.py" --port "$port" --node-id NODE_fedroute \
    --expect-dataset cohort --search-tag '#a' --train-mib 16 --train-expect error \
    --restart-cert same --timeout 280 >"$d/researcher.out" 2>"$d/researcher.err" &
  local rpid=$!; PIDS+=("$rpid")
  RUST_LOG="${RUST_LOG:-info}" timeout 300 "$BIN" node --researcher "127.0.0.1:$port" --id NODE_fedroute \
    --name fedroute-interop --dataset 'cohort:#a,#b' --dataset 'other:#c' --state-dir "$d/node-state" --connect-timeout 120 \
    >"$d/fedroute-node.out" 2>"$d/fedroute-node.err" &
  local npid=$!; PIDS+=("$npid")
  wait "$rpid"; local rc=$?
  kill -INT "$npid" 2>/dev/null; wait "$npid" 2>/dev/null
  local res; res="$(result_of "$d/researcher.out")"
  say "node: $(json_field "$res" passed) checks passed, $(json_field "$res" failed) failed"
  [ "$rc" = 0 ] && [ "$(json_field "$res" ok)" = True ] || { show_logs "$d"; return 1; }
}

scenario_reconnect() {
  local d="$WORK/reconnect" port
  mkdir -p "$d"; port="$(free_port)"
  local outages="0.5,0.5,0.5,0.5,0.5,2,2,2,2,2,10,10,10,10,10"
  timeout 400 "$PY" "$HERE/fbm_researcher.py" --port "$port" --node-id NODE_fedroute_back \
    --ping-only --restart-cert same --outages "$outages" --max-reconnect-s 0.2 \
    --timeout 390 >"$d/researcher.out" 2>"$d/researcher.err" &
  local rpid=$!; PIDS+=("$rpid")
  RUST_LOG="${RUST_LOG:-info}" timeout 400 "$BIN" node --researcher "127.0.0.1:$port" --id NODE_fedroute_back \
    --connect-timeout 0 --state-dir "$d/node-state" >"$d/fedroute-node.out" 2>"$d/fedroute-node.err" &
  local npid=$!; PIDS+=("$npid")
  wait "$rpid"; local rc=$?
  kill -INT "$npid" 2>/dev/null; wait "$npid" 2>/dev/null
  local res; res="$(result_of "$d/researcher.out")"
  # One line per outage length: the node's first poll after the restart, every run.
  "$PY" - "$res" >&2 <<'PYEOF'
import json, sys, statistics
d = json.loads(sys.argv[1] or "{}")
runs = {}
for p in d.get("phases", []):
    if p.get("phase") == "restart" and p.get("timings", {}).get("first_poll_s") is not None:
        runs.setdefault(p["outage_s"], []).append(p["timings"]["first_poll_s"] * 1e3)
for outage, ms in sorted(runs.items()):
    print(f"interop: reconnect: outage {outage} s: listening -> first poll median {statistics.median(ms):.0f} ms, "
          f"max {max(ms):.0f} ms ({', '.join(f'{m:.0f}' for m in ms)})")
PYEOF
  say "reconnect: $(json_field "$res" passed) checks passed, $(json_field "$res" failed) failed"
  [ "$rc" = 0 ] && [ "$(json_field "$res" ok)" = True ] || { show_logs "$d"; return 1; }
}

# One run of the regenerated-certificate case: the Fed-BioMed researcher restarts with a new
# key and the same id; `fedroute node` runs with the extra flags given.
regen_run() {
  local d="$1"; shift
  local port; mkdir -p "$d"; port="$(free_port)"
  timeout 120 "$PY" "$HERE/fbm_researcher.py" --port "$port" --node-id NODE_fedroute_regen \
    --ping-only --restart-cert fresh --connect-timeout 15 --timeout 110 \
    >"$d/researcher.out" 2>"$d/researcher.err" &
  local rpid=$!; PIDS+=("$rpid")
  RUST_LOG="${RUST_LOG:-info}" timeout 120 "$BIN" node --researcher "127.0.0.1:$port" --id NODE_fedroute_regen \
    --connect-timeout 0 --state-dir "$d/node-state" "$@" >"$d/fedroute-node.out" 2>"$d/fedroute-node.err" &
  local npid=$!; PIDS+=("$npid")
  wait "$rpid"; local rc=$?
  kill -INT "$npid" 2>/dev/null; wait "$npid" 2>/dev/null
  return "$rc"
}

scenario_regen() {
  local d="$WORK/regen" ok=0
  # Default (strict): the regenerated certificate is refused, nothing is sent to it.
  if regen_run "$d/strict"; then
    say "regen: the node served a researcher whose certificate changed without a proof"; ok=1
  elif ! grep -q "instead of the trusted" "$d/strict/fedroute-node.err"; then
    say "regen: the researcher run failed, but not because the node refused the certificate"; ok=1
  else
    say "regen: strict: refused ($(grep -c 'instead of the trusted' "$d/strict/fedroute-node.err") refused attempt(s) logged)"
  fi
  # --trust-same-id (Fed-BioMed's behaviour): accepted, with a warning.
  if ! regen_run "$d/same-id" --trust-same-id; then
    say "regen: --trust-same-id: the researcher run failed"; ok=1
  elif ! grep -q "only because it names the same researcher id" "$d/same-id/fedroute-node.err"; then
    say "regen: --trust-same-id: served, but without the warning"; ok=1
  else
    say "regen: --trust-same-id: served after the regeneration, with a warning"
  fi
  [ "$ok" = 0 ] || { show_logs "$d/strict"; show_logs "$d/same-id"; return 1; }
}

scenario_node_lib() {
  local d="$WORK/node-lib"
  mkdir -p "$d"
  RUST_LOG="${RUST_LOG:-info}" FEDROUTE_INTEROP_PYTHON="$PY" FEDROUTE_INTEROP_RESEARCHER="$HERE/fbm_researcher.py" \
    FEDROUTE_INTEROP_LOGS="$d" interop_test node::fedroute_node_library_serves_fedbiomed_researcher "$d/cargo-test.log" \
    || { grep -E '^(PASS|FAIL) ' "$d/cargo-test.log" >&2; show_logs "$d"; return 1; }
  grep -E '^(PASS|FAIL) ' "$d/cargo-test.log" >&2 || true
}

scenario_researcher() {
  local d="$WORK/researcher"
  mkdir -p "$d"
  FEDROUTE_INTEROP_PYTHON="$PY" FEDROUTE_INTEROP_NODE="$HERE/fbm_node.py" FEDROUTE_INTEROP_LOGS="$d" \
    interop_test researcher::fedroute_researcher_drives_fedbiomed_node "$d/cargo-test.log" \
    || { grep -E '^(PASS|FAIL) ' "$d/cargo-test.log" >&2; show_logs "$d"; return 1; }
  grep -E '^(PASS|FAIL) ' "$d/cargo-test.log" >&2 || true
}

scenario_bytes() {
  local d="$WORK/bytes" rc=0
  mkdir -p "$d/from-fedbiomed" "$d/from-fedroute"
  timeout 120 "$PY" "$HERE/fbm_bytes.py" write "$d/from-fedbiomed" >"$d/fbm-write.out" 2>"$d/fbm-write.err" || rc=1
  FEDROUTE_INTEROP_OUT="$d/from-fedroute" interop_test bytes::fedroute_writes_typed_messages "$d/rust-write.log" || rc=1
  FEDROUTE_INTEROP_IN="$d/from-fedbiomed" interop_test bytes::fedroute_reads_fedbiomed_messages "$d/rust-read.log" || rc=1
  timeout 120 "$PY" "$HERE/fbm_bytes.py" check "$d/from-fedroute" --expect-class typed \
    >"$d/fbm-check.out" 2>"$d/fbm-check.err" || rc=1
  # Same values, same bytes: fedroute writes exactly what Fed-BioMed writes.
  local f diff=0
  for f in "$d"/from-fedbiomed/*.msgpack; do
    cmp -s "$f" "$d/from-fedroute/$(basename "$f")" || { say "bytes: $(basename "$f") differs from Fed-BioMed's"; diff=1; }
  done
  [ "$diff" = 0 ] || rc=1
  say "bytes: Fed-BioMed accepted $(grep -c ' PASS ' "$d/fbm-check.err" 2>/dev/null) fedroute files;" \
    "fedroute decoded $(grep -c '^PASS ' "$d/rust-read.log" 2>/dev/null) Fed-BioMed files"
  [ "$rc" = 0 ] || { show_logs "$d"; return 1; }
}

# --- run ---------------------------------------------------------------------------------------
PASSED=0; FAILED=0
for s in "${SCENARIOS[@]}"; do
  say "== scenario $s"
  start=$(date +%s)
  if "scenario_${s//-/_}"; then
    echo "PASS $s ($(( $(date +%s) - start )) s)"; PASSED=$((PASSED + 1))
  else
    echo "FAIL $s ($(( $(date +%s) - start )) s)"; FAILED=$((FAILED + 1))
  fi
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
