"""Helpers shared by the interop programs (fbm_researcher.py, fbm_node.py, fbm_bytes.py).

Run these programs with the venv built by setup.sh and the torch stand-in
first on PYTHONPATH, e.g.:

    PYTHONPATH=tests/interop/stubs tests/interop/.venv/bin/python tests/interop/fbm_node.py ...

Every program bounds itself (`hard_timeout`) and talks to 127.0.0.1 only.
"""

import json
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STUBS = os.path.join(HERE, "stubs")
if STUBS not in sys.path:
    sys.path.insert(0, STUBS)

LOOPBACK = "127.0.0.1"


def log(prog, *parts):
    """One diagnostic line on stderr (stdout is kept for the JSON result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {prog}:", *parts, file=sys.stderr, flush=True)


def result_line(obj):
    """The machine-readable result: one JSON line on stdout."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def hard_timeout(prog, seconds, on_expire=None):
    """Ends the whole process (os._exit(3)) after `seconds`, whatever threads
    (grpc, asyncio) are doing. Prints a failing JSON result line first."""

    def expire():
        extra = {}
        if on_expire is not None:
            try:
                extra = on_expire() or {}
            except Exception as exc:  # noqa: BLE001 - the process ends anyway
                extra = {"on_expire_error": repr(exc)}
        log(prog, f"hard timeout after {seconds}s: exiting")
        result_line({"program": prog, "ok": False, "error": f"hard timeout after {seconds}s", **extra})
        os._exit(3)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def free_port():
    """A TCP port free on 127.0.0.1 right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def parse_endpoint(text):
    """'HOST:PORT' -> (host, port); only loopback hosts are accepted."""
    host, _, port = text.rpartition(":")
    if host not in (LOOPBACK, "localhost"):
        raise SystemExit(f"refusing non-loopback endpoint {text!r}")
    return host, int(port)


def parse_dataset(text):
    """'NAME:TAG,TAG' -> a Fed-BioMed-like dataset entry (as the node's
    dataset table would hold it after obfuscation)."""
    name, _, tags = text.partition(":")
    tags = [t for t in tags.split(",") if t] or [name]
    return {
        "name": name,
        "data_type": "csv",
        "tags": tags,
        "description": f"interop dataset {name}",
        "shape": [1, 1],
        "dataset_id": f"dataset_{name}",
        "dtypes": ["float64"],
    }


def make_researcher_certificate(folder, researcher_id, host=LOOPBACK, name="server"):
    """A self-signed certificate made by Fed-BioMed's own CertificateManager,
    as its researcher does: RSA-2048, CN = host, O = researcher id, SAN IP = host.

    Returns (key_path, cert_path)."""
    from fedbiomed.common.certificate_manager import CertificateManager

    os.makedirs(folder, exist_ok=True)
    for ext in ("key", "pem"):
        path = os.path.join(folder, f"{name}.{ext}")
        if os.path.exists(path):
            os.remove(path)
    return CertificateManager.generate_self_signed_ssl_certificate(
        certificate_folder=folder,
        certificate_name=name,
        component_id=researcher_id,
        subject={"CommonName": host},
    )


class ServerConfig:
    """The only part of a Fed-BioMed Config that GrpcServer reads."""

    def __init__(self, node_disconnection_timeout=10):
        self._timeout = node_disconnection_timeout

    def getint(self, section, key):
        if (section, key) != ("server", "node_disconnection_timeout"):
            raise KeyError(f"{section}.{key}")
        return int(self._timeout)


def wait_until(predicate, timeout, interval=0.05):
    """Polls `predicate` until it returns a truthy value or `timeout` passes.
    Used only where Fed-BioMed offers no event to wait on (e.g. a node agent
    appearing in GrpcServer's store)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return value
        time.sleep(interval)
