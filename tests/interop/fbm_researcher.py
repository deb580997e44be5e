#!/usr/bin/env python3
"""A Fed-BioMed researcher made of Fed-BioMed 6.4.1's real transport (GrpcServer),
driving one node (fedroute's `fedroute node`, or fbm_node.py) through a scenario.

It listens with TLS on 127.0.0.1:PORT, with a certificate made by Fed-BioMed's
CertificateManager (RSA-2048, CN = 127.0.0.1, SAN IP, O = researcher id), and:

  phase "main"
    1. waits for the node's first poll (GetTaskUnary)
    2. PingRequest      -> PingReply (request_id, node_id checked)
    3. SearchRequest    -> SearchReply naming every --expect-dataset
    4. ListRequest      -> ListReply naming every --expect-dataset
    5. ApprovalRequest  -> ErrorMessage (or ApprovalReply) with the request_id
    6. TrainRequest with a --train-mib MiB uint8 ndarray in `params`:
         --train-expect error: an ErrorMessage with the right request_id
         --train-expect echo:  a TrainReply whose params are the same bytes
    7. Feedback: at least --min-logs FeedbackMessage.log records from the
       node, each `msg` readable the way Fed-BioMed's researcher prints it
       (json.loads(msg)["message"])
     (--ping-only: steps 1 and 2 only)
  phase "restart", once after each outage of --outages (default: one, at once)
    the researcher process is started again on the same port with a FRESH
    certificate (new key) and the SAME researcher id (--restart-cert same keeps
    the certificate); the node must poll again and answer a PingRequest
    (--max-reconnect-s: within that long of the server listening again).
    The previous phase's process ends with os._exit, no shutdown: the kernel
    closes its sockets, as after a kill; the outage is the sleep between the
    phases plus the new process's start-up (about a second of imports).

Without --phase, the program runs both phases, each as a child process of
itself (a real process restart), and prints one JSON line on stdout:
    {"program": "fbm_researcher", "ok": true, "phases": [...], ...}
exit 0 only when every check passed. --timeout bounds the whole run; each
phase has its own bound too.

Example:
    PYTHONPATH=tests/interop/stubs tests/interop/.venv/bin/python tests/interop/fbm_researcher.py \
        --port 50051 --node-id NODE_py --expect-dataset cohort --search-tag '#a' --train-expect echo
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbm_common as common  # noqa: E402

PROG = "fbm_researcher"


# --- one phase, in this process ----------------------------------------------------------------


class Phase:
    def __init__(self, args):
        self.args = args
        self.checks = []
        self.logs = []
        self.scalars = []
        self.lock = threading.Lock()
        self.log_event = threading.Event()
        self.server = None
        self.timings = {}

    def check(self, name, ok, **detail):
        self.checks.append({"check": name, "ok": bool(ok), **detail})
        common.log(PROG, f"[{self.args.phase}] {'PASS' if ok else 'FAIL'} {name} {json.dumps(detail, default=str)[:400]}")
        return ok

    def on_message(self, msg, type_):
        # GrpcServer's Feedback handler: msg is a Log or Scalar dataclass.
        name = getattr(type_, "name", str(type_))
        with self.lock:
            if name == "LOG":
                self.logs.append(msg.get_dict())
                if len([l for l in self.logs if l.get("node_id") == self.args.node_id]) >= self.args.min_logs:
                    self.log_event.set()
            elif name == "SCALAR":
                self.scalars.append(msg.get_dict())

    def start_server(self, cert_dir):
        from fedbiomed.transport.server import GrpcServer, SSLCredentials

        if self.args.restart_cert == "same" and os.path.exists(os.path.join(cert_dir, "server.pem")):
            key = os.path.join(cert_dir, "server.key")
            cert = os.path.join(cert_dir, "server.pem")
        else:
            key, cert = common.make_researcher_certificate(cert_dir, self.args.researcher_id)
        with open(cert, "rb") as f:
            self.timings["cert_sha256"] = __import__("hashlib").sha256(f.read()).hexdigest()
        self.server = GrpcServer(
            host=common.LOOPBACK,
            port=str(self.args.port),
            config=common.ServerConfig(self.args.disconnection_timeout),
            on_message=self.on_message,
            ssl=SSLCredentials(key=key, cert=cert),
        )
        # GrpcServer.start() runs the asyncio server in a thread and then sleeps
        # 3 s (and up to 20 s until some node polls). Start the same thread
        # without that fixed sleep, and wait for the server's own "started"
        # event, so reconnect times are measured from the moment it listens.
        self.server._thread = threading.Thread(target=self.server._run, daemon=True)
        self.server._thread.start()
        if not self.server._is_started.wait(timeout=30):
            raise RuntimeError("GrpcServer did not start within 30 s")
        common.log(PROG, f"[{self.args.phase}] GrpcServer listening on 127.0.0.1:{self.args.port} as {self.args.researcher_id}")

    def wait_node(self):
        t0 = time.monotonic()
        # Polled every 10 ms: GrpcServer has no event for a node's first poll.
        agent = common.wait_until(lambda: self.server.get_node(self.args.node_id), self.args.connect_timeout, interval=0.01)
        self.timings["first_poll_s"] = round(time.monotonic() - t0, 3)
        self.check("node polls (GetTaskUnary)", agent is not None, node_id=self.args.node_id, after_s=self.timings["first_poll_s"])
        return agent

    def request(self, message, timeout):
        """Sends through the node agent, waits for the reply matched by request_id."""
        done = threading.Event()
        box = {}

        def on_reply(reply):
            box["reply"] = reply
            box["t"] = time.monotonic()
            done.set()

        agent = self.server.get_node(self.args.node_id)
        t0 = time.monotonic()
        agent.send(message, on_reply=on_reply)
        got = done.wait(timeout)
        agent.flush(message.request_id)
        if not got:
            return None, None
        return box["reply"], round(box["t"] - t0, 4)

    def common_reply_checks(self, reply, request):
        return (
            reply is not None
            and getattr(reply, "request_id", None) == request.request_id
            and getattr(reply, "node_id", None) == self.args.node_id
            and getattr(reply, "researcher_id", None) == self.args.researcher_id
        )

    def ping(self, label):
        from fedbiomed.common.message import PingReply, PingRequest

        req = PingRequest(researcher_id=self.args.researcher_id, request_id=str(uuid.uuid4()))
        reply, rtt = self.request(req, self.args.request_timeout)
        return self.check(
            label,
            isinstance(reply, PingReply) and self.common_reply_checks(reply, req),
            reply=type(reply).__name__ if reply is not None else None,
            request_id=req.request_id,
            rtt_s=rtt,
        )

    def run_main(self):
        import numpy as np
        from fedbiomed.common.message import (
            ApprovalReply,
            ApprovalRequest,
            ErrorMessage,
            ListReply,
            ListRequest,
            SearchReply,
            SearchRequest,
            TrainReply,
            TrainRequest,
        )

        a = self.args
        self.ping("PingRequest -> PingReply")

        req = SearchRequest(researcher_id=a.researcher_id, request_id=str(uuid.uuid4()), tags=a.search_tag)
        reply, rtt = self.request(req, a.request_timeout)
        names = [d.get("name") for d in getattr(reply, "databases", []) or []] if reply is not None else []
        self.check(
            "SearchRequest -> SearchReply with the declared datasets",
            isinstance(reply, SearchReply)
            and self.common_reply_checks(reply, req)
            and set(a.expect_dataset).issubset(names)
            and reply.count == len(reply.databases),
            reply=type(reply).__name__ if reply is not None else None,
            request_id=req.request_id,
            tags=a.search_tag,
            datasets=names,
            rtt_s=rtt,
        )

        req = ListRequest(researcher_id=a.researcher_id, request_id=str(uuid.uuid4()))
        reply, rtt = self.request(req, a.request_timeout)
        names = [d.get("name") for d in getattr(reply, "databases", []) or []] if reply is not None else []
        self.check(
            "ListRequest -> ListReply with the declared datasets",
            isinstance(reply, ListReply)
            and self.common_reply_checks(reply, req)
            and set(a.expect_dataset).issubset(names)
            and reply.count == len(reply.databases),
            reply=type(reply).__name__ if reply is not None else None,
            datasets=names,
            rtt_s=rtt,
        )

        req = ApprovalRequest(
            researcher_id=a.researcher_id,
            request_id=str(uuid.uuid4()),
            description="interop approval",
            training_plan="# no plan",
        )
        reply, rtt = self.request(req, a.request_timeout)
        self.check(
            "ApprovalRequest -> ErrorMessage or ApprovalReply with its request_id",
            isinstance(reply, (ErrorMessage, ApprovalReply)) and self.common_reply_checks(reply, req),
            reply=type(reply).__name__ if reply is not None else None,
            rtt_s=rtt,
        )

        blob = np.frombuffer(os.urandom(a.train_mib * 1024 * 1024), dtype=np.uint8).copy()
        req = TrainRequest(
            researcher_id=a.researcher_id,
            request_id=str(uuid.uuid4()),
            experiment_id="interop-exp",
            state_id=None,
            training_args={"epochs": 1},
            dataset_id="interop-ds",
            training=True,
            model_args={},
            params={"blob": blob},
            training_plan="# none",
            training_plan_class="InteropTP",
            round=0,
            aggregator_args={},
        )
        reply, rtt = self.request(req, a.train_timeout)
        name = type(reply).__name__ if reply is not None else None
        if a.train_expect == "error":
            self.check(
                f"TrainRequest ({a.train_mib} MiB) -> ErrorMessage with its request_id",
                isinstance(reply, ErrorMessage) and self.common_reply_checks(reply, req),
                reply=name,
                request_id=req.request_id,
                errnum=getattr(reply, "errnum", None),
                extra_msg=(getattr(reply, "extra_msg", "") or "")[:200],
                rtt_s=rtt,
            )
        else:
            echoed = getattr(reply, "params", None) or {}
            back = echoed.get("blob") if isinstance(echoed, dict) else None
            same = isinstance(back, np.ndarray) and back.dtype == blob.dtype and back.shape == blob.shape and bytes(back.data) == bytes(blob.data)
            self.check(
                f"TrainRequest ({a.train_mib} MiB) -> TrainReply echoing the same bytes",
                isinstance(reply, TrainReply) and self.common_reply_checks(reply, req) and same,
                reply=name,
                rtt_s=rtt,
            )

        # Feedback: logs from the node, readable as Fed-BioMed's researcher reads them.
        self.log_event.wait(a.log_timeout)
        with self.lock:
            mine = [l for l in self.logs if l.get("node_id") == a.node_id]
        readable = []
        for entry in mine:
            try:
                readable.append(json.loads(entry["msg"])["message"])
            except Exception:  # noqa: BLE001 - counted below
                pass
        self.check(
            f"node logs arrive as FeedbackMessage.log (>= {a.min_logs})",
            len(mine) >= a.min_logs,
            count=len(mine),
            levels=sorted({l.get("level") for l in mine}),
            sample=[l.get("msg") for l in mine[:2]],
        )
        self.check(
            "every Feedback log msg is Fed-BioMed's JSON ({..., \"message\": ...})",
            len(mine) > 0 and len(readable) == len(mine),
            readable=len(readable),
            count=len(mine),
        )

    def run(self):
        cert_dir = self.args.cert_dir
        self.start_server(cert_dir)
        if self.wait_node() is None:
            return
        if self.args.phase == "main":
            if self.args.ping_only:
                self.ping("PingRequest -> PingReply")
            else:
                self.run_main()
        else:
            back = self.timings.get("first_poll_s")
            self.timings["reconnect_s"] = back
            if self.args.max_reconnect_s is not None:
                self.check(
                    f"after restart: node polls within {self.args.max_reconnect_s} s of listening",
                    back is not None and back <= self.args.max_reconnect_s,
                    after_s=back,
                    outage_s=self.args.outage_s,
                )
            self.ping("after restart: PingRequest -> PingReply")


def run_phase(args):
    phase = Phase(args)

    def on_expire():
        return {"phase": args.phase, "checks": phase.checks}

    common.hard_timeout(f"{PROG}[{args.phase}]", args.phase_timeout, on_expire)
    try:
        phase.run()
        error = None
    except Exception as exc:  # noqa: BLE001 - reported in the result
        error = repr(exc)
        common.log(PROG, f"[{args.phase}] error: {error}")
    ok = error is None and bool(phase.checks) and all(c["ok"] for c in phase.checks)
    common.result_line({"program": PROG, "phase": args.phase, "ok": ok, "error": error, "checks": phase.checks, "timings": phase.timings})
    os._exit(0 if ok else 1)


# --- the whole scenario: each phase as a child process ----------------------------------------


def run_all(args, argv):
    common.hard_timeout(PROG, args.timeout)
    cert_dir = args.cert_dir or tempfile.mkdtemp(prefix="fbm_researcher_")
    phases = []
    ok = True
    outages = [] if args.no_restart else [float(o) for o in args.outages.split(",") if o.strip()]
    for phase, outage in [("main", 0.0)] + [("restart", o) for o in outages]:
        if outage > 0:
            common.log(PROG, f"researcher down for {outage} s")
            time.sleep(outage)
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--phase", phase, "--cert-dir", cert_dir, "--outage-s", str(outage)]
        common.log(PROG, f"starting phase {phase}")
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=args.phase_timeout + 10, check=False)
            lines = [l for l in proc.stdout.decode(errors="replace").splitlines() if l.startswith("{")]
            res = json.loads(lines[-1]) if lines else {"ok": False, "error": f"no result line (exit {proc.returncode})"}
            res["exit"] = proc.returncode
        except subprocess.TimeoutExpired:
            res = {"ok": False, "error": "phase process timed out"}
        res["phase"] = phase
        res["outage_s"] = outage
        phases.append(res)
        ok = ok and res.get("ok", False) and res.get("exit") == 0
        # The restart phase runs even after a failed check in "main" (more to
        # learn from one run), but not when the node never showed up.
        if not any(c.get("ok") for c in res.get("checks", [])):
            break
    checks = [c for p in phases for c in p.get("checks", [])]
    common.result_line(
        {
            "program": PROG,
            "ok": ok,
            "researcher_id": args.researcher_id,
            "node_id": args.node_id,
            "passed": sum(1 for c in checks if c["ok"]),
            "failed": max(sum(1 for c in checks if not c["ok"]), 0 if ok else 1),
            "phases": phases,
        }
    )
    os._exit(0 if ok else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 to listen on")
    ap.add_argument("--node-id", required=True, help="the node id expected to poll")
    ap.add_argument("--researcher-id", default=None, help="default: RESEARCHER_<uuid4>")
    ap.add_argument("--expect-dataset", action="append", default=[], help="dataset name the node must report; repeatable")
    ap.add_argument("--search-tag", action="append", default=[], help="tag for the SearchRequest; repeatable")
    ap.add_argument("--train-mib", type=int, default=16, help="TrainRequest params size in MiB (default 16)")
    ap.add_argument("--train-expect", choices=["error", "echo"], default="error", help="error: fedroute's reference node; echo: fbm_node.py")
    ap.add_argument("--min-logs", type=int, default=1, help="Feedback logs expected from the node (default 1)")
    ap.add_argument("--restart-cert", choices=["fresh", "same"], default="fresh", help="certificate after the restart (default fresh)")
    ap.add_argument("--no-restart", action="store_true", help="skip the restart phase")
    ap.add_argument("--outages", default="0", help="comma-separated seconds the researcher stays down before each restart phase (default 0: one restart)")
    ap.add_argument("--ping-only", action="store_true", help="phase main: only the first poll and a ping")
    ap.add_argument("--max-reconnect-s", type=float, default=None, help="restart phases: a check that the node polls within this long of listening")
    ap.add_argument("--outage-s", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--connect-timeout", type=float, default=60, help="wait for the node's poll (s, default 60)")
    ap.add_argument("--request-timeout", type=float, default=20, help="per request (s, default 20)")
    ap.add_argument("--train-timeout", type=float, default=60, help="for the TrainRequest (s, default 60)")
    ap.add_argument("--log-timeout", type=float, default=10, help="wait for Feedback logs (s, default 10)")
    ap.add_argument("--disconnection-timeout", type=int, default=10, help="GrpcServer node_disconnection_timeout (default 10)")
    ap.add_argument("--phase-timeout", type=float, default=150, help="hard bound per phase (s, default 150)")
    ap.add_argument("--timeout", type=float, default=330, help="hard bound for the whole run (s, default 330)")
    ap.add_argument("--phase", choices=["main", "restart"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cert-dir", default=None, help="where certificates go (default: a temp dir)")
    ap.add_argument("--verbose", action="store_true", help="Fed-BioMed logger at DEBUG on stderr")
    argv = sys.argv[1:]
    args = ap.parse_args()
    if args.researcher_id is None:
        args.researcher_id = f"RESEARCHER_{uuid.uuid4()}"
        argv += ["--researcher-id", args.researcher_id]
    if not args.search_tag:
        args.search_tag = []
    if args.phase is None:
        run_all(args, argv)
    else:
        from fedbiomed.common.logger import logger

        logger.setLevel("DEBUG" if args.verbose else "INFO")
        run_phase(args)


if __name__ == "__main__":
    main()
