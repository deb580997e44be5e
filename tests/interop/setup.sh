#!/usr/bin/env bash
# Builds (once) the Python virtual environment that runs Fed-BioMed 6.4.1's own
# transport (GrpcServer, GrpcController, Message, Serializer) for the interop
# scenarios. Everything comes from PyPI through pip; nothing else is fetched.
#
#   tests/interop/setup.sh          # build if needed, then print the venv path
#   FORCE=1 tests/interop/setup.sh  # rebuild from scratch
#
# The venv lives in tests/interop/.venv (git-ignored); its pip log in
# tests/interop/.cache (git-ignored). A marker file written only after a
# successful smoke import makes reruns instant; a changed requirement list
# (this file's REQUIREMENTS block) triggers a rebuild. Fails loudly: any pip
# error prints the tail of the pip log and exits non-zero.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="$HERE/.venv"
CACHE="$HERE/.cache"
LOG="$CACHE/pip.log"
MARKER="$VENV/.fedroute-interop-ok"
STUBS="$HERE/stubs"
PYTHON="${INTEROP_PYTHON:-python3}"

# The install steps, one pip invocation per line (see shared/wire/INTEROP.md).
# Fed-BioMed's full dependency list (torch, monai, ...) is not needed for its
# transport: fedbiomed and declearn are installed without dependencies and the
# transport's real dependencies are listed here.
REQUIREMENTS=(
  "--no-deps fedbiomed==6.4.1"
  "grpcio~=1.82.0 protobuf msgpack~=1.0 cryptography~=40.0 pyopenssl~=23.1.1 numpy packaging~=24.1 psutil~=6.0.0"
  "--no-deps declearn>=2.0,<2.9"
  "scikit-learn joblib~=1.2 pandas<3 requests~=2.29 tqdm~=4.62 fire~=0.4 gmpy2<2.2,>=2.1.2 tinydb~=4.7.1 tabulate<0.10,>=0.9"
)
STAMP="$(printf '%s\n' "$("$PYTHON" --version 2>&1)" "${REQUIREMENTS[@]}" | sha256sum | cut -d' ' -f1)"

log() { echo "interop/setup: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$CACHE"

# One builder at a time (CI and a developer, or two scenario runners).
exec 9>"$CACHE/setup.lock"
if ! flock -w 900 9; then
  die "another setup.sh has held $CACHE/setup.lock for 15 minutes"
fi

if [ "${FORCE:-0}" != "1" ] && [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$STAMP" ]; then
  echo "$VENV"
  exit 0
fi

log "building the Fed-BioMed 6.4.1 transport venv in $VENV (a few minutes; pip log: $LOG)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || die "python3 -m venv failed (is the venv module installed?)"

pip_step() {
  # $1: the requirement line, word-split on purpose.
  # shellcheck disable=SC2086
  # pip's own cache (~/.cache/pip) is kept: a rebuild on the same machine
  # downloads nothing.
  if ! timeout 1200 "$VENV/bin/pip" install --no-input --progress-bar off $1 >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    rm -rf "$VENV"
    die "pip install $1 failed (full log: $LOG)"
  fi
}

: >"$LOG"
for req in "${REQUIREMENTS[@]}"; do
  log "pip install $req"
  pip_step "$req"
done

# Smoke test: the pieces the scenarios use must import with the torch stand-in.
if ! PYTHONPATH="$STUBS" timeout 120 "$VENV/bin/python" - >>"$LOG" 2>&1 <<'EOF'
import fedbiomed
from fedbiomed.common.message import Message, PingRequest
from fedbiomed.common.serializer import Serializer
from fedbiomed.transport.server import GrpcServer, SSLCredentials
from fedbiomed.transport.controller import GrpcController
from fedbiomed.transport.client import ResearcherCredentials
m = PingRequest(researcher_id="r", request_id="q")
assert Message.from_dict(Serializer.loads(Serializer.dumps(m.to_dict()))) == m
print("smoke ok", fedbiomed.__version__ if hasattr(fedbiomed, "__version__") else "")
EOF
then
  tail -n 30 "$LOG" >&2
  # The venv is kept for inspection; without the marker the next run rebuilds it.
  die "the built venv cannot import Fed-BioMed's transport (full log: $LOG)"
fi

echo "$STAMP" >"$MARKER"
log "ready: $VENV"
echo "$VENV"
