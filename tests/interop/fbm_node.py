#!/usr/bin/env python3
"""A Fed-BioMed node made of Fed-BioMed 6.4.1's real transport (GrpcController).

It dials one or more researchers (fedroute's or Fed-BioMed's), and answers:
- PingRequest   -> PingReply
- ListRequest   -> ListReply with the declared datasets
- SearchRequest -> SearchReply with the declared datasets whose tags contain
                   every requested tag (Fed-BioMed's search_by_tags rule)
- TrainRequest  -> TrainReply echoing `params` unchanged (so a large payload
                   travels both ways)
- anything else -> ErrorMessage carrying the request_id
After each request it logs one INFO record tagged with the researcher id
through Fed-BioMed's own logger, whose gRPC handler turns it into a
FeedbackMessage.log (the way a real Fed-BioMed node reports to researchers).

It runs until SIGTERM/SIGINT, `--duration` seconds, or `--exit-after N`
handled requests, then prints `RESULT {json}` on stdout (counts per class,
sha256 of the TrainRequest payloads seen) and exits 0. `--timeout` is a hard
bound: past it the process exits 3 whatever it is doing.

Example:
    PYTHONPATH=tests/interop/stubs tests/interop/.venv/bin/python tests/interop/fbm_node.py \
        --researcher 127.0.0.1:50051 --id NODE_py --dataset cohort:#a,#b --timeout 120
"""

import argparse
import hashlib
import os
import queue
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbm_common as common  # noqa: E402

PROG = "fbm_node"


def digest_params(params):
    """sha256 over every ndarray/bytes leaf of a params dict, in key order."""
    import numpy as np

    h = hashlib.sha256()
    total = 0

    def walk(v):
        nonlocal total
        if isinstance(v, dict):
            for k in sorted(v):
                h.update(str(k).encode())
                walk(v[k])
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, np.ndarray):
            b = v.tobytes()
            total += len(b)
            h.update(b)
        elif isinstance(v, (bytes, bytearray)):
            total += len(v)
            h.update(v)
        else:
            h.update(repr(v).encode())

    walk(params)
    return h.hexdigest(), total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--researcher", action="append", required=True, help="HOST:PORT (loopback only); repeatable")
    ap.add_argument("--id", required=True, help="node id (e.g. NODE_py)")
    ap.add_argument("--name", default=None, help="node name (default: the id)")
    ap.add_argument("--dataset", action="append", default=[], help="NAME:TAG,TAG; repeatable")
    ap.add_argument("--timeout", type=float, default=120, help="hard bound in seconds (default 120)")
    ap.add_argument("--duration", type=float, default=None, help="stop cleanly after this many seconds")
    ap.add_argument("--exit-after", type=int, default=None, help="stop cleanly after N handled requests")
    ap.add_argument("--no-feedback", action="store_true", help="do not log a Feedback record per request")
    ap.add_argument("--verbose", action="store_true", help="Fed-BioMed logger at DEBUG on stderr")
    args = ap.parse_args()

    common.hard_timeout(PROG, args.timeout)
    endpoints = [common.parse_endpoint(e) for e in args.researcher]
    datasets = [common.parse_dataset(d) for d in args.dataset]
    node_name = args.name or args.id

    import numpy as np  # noqa: F401  (Serializer returns ndarrays)
    from fedbiomed.common.constants import ErrorNumbers
    from fedbiomed.common.logger import logger
    from fedbiomed.common.message import (
        ErrorMessage,
        ListReply,
        ListRequest,
        Message,
        PingReply,
        PingRequest,
        SearchReply,
        SearchRequest,
        TrainReply,
        TrainRequest,
    )
    from fedbiomed.transport.client import ResearcherCredentials
    from fedbiomed.transport.controller import GrpcController

    logger.setLevel("DEBUG" if args.verbose else "INFO")

    inbox = queue.Queue(maxsize=64)
    stats = {"received": {}, "replied": {}, "errors": [], "train_payloads": [], "bad_messages": 0}
    stop = threading.Event()

    def on_message(msg):
        # Runs on the controller's asyncio thread: hand over, never block long.
        try:
            inbox.put(msg, timeout=5)
        except queue.Full:
            stats["errors"].append("inbox full: a task was dropped")

    def on_signal(signum, _frame):
        common.log(PROG, f"signal {signum}: stopping")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    controller = GrpcController(
        args.id,
        [ResearcherCredentials(port=str(port), host=host) for host, port in endpoints],
        on_message,
    )
    controller.start()
    common.log(PROG, f"started node {args.id} -> {', '.join(args.researcher)}; datasets {[d['name'] for d in datasets]}")

    def reply(message):
        controller.send(message)
        name = type(message).__name__
        stats["replied"][name] = stats["replied"].get(name, 0) + 1

    def handle(raw):
        try:
            message = Message.from_dict(raw)
        except Exception as exc:  # noqa: BLE001 - report, answer, go on
            stats["bad_messages"] += 1
            stats["errors"].append(f"from_dict failed: {exc!r}")
            common.log(PROG, f"bad message: {exc!r}")
            reply(
                ErrorMessage(
                    request_id=raw.get("request_id"),
                    researcher_id=raw.get("researcher_id", "<unknown>"),
                    node_id=args.id,
                    node_name=node_name,
                    extra_msg=f"Message was not properly formatted: {exc}",
                    errnum=ErrorNumbers.FB301.name,
                )
            )
            return
        name = type(message).__name__
        stats["received"][name] = stats["received"].get(name, 0) + 1
        common.log(PROG, f"received {name} request_id={getattr(message, 'request_id', None)}")
        rid = message.researcher_id
        if isinstance(message, PingRequest):
            reply(PingReply(request_id=message.request_id, researcher_id=rid, node_id=args.id, node_name=node_name))
        elif isinstance(message, SearchRequest):
            found = [dict(d) for d in datasets if set(message.tags).issubset(d["tags"])]
            reply(
                SearchReply(
                    request_id=message.request_id,
                    researcher_id=rid,
                    databases=found,
                    node_id=args.id,
                    node_name=node_name,
                    count=len(found),
                )
            )
        elif isinstance(message, ListRequest):
            reply(
                ListReply(
                    request_id=message.request_id,
                    researcher_id=rid,
                    success=True,
                    databases=[dict(d) for d in datasets],
                    node_id=args.id,
                    node_name=node_name,
                    count=len(datasets),
                )
            )
        elif isinstance(message, TrainRequest):
            sha, size = digest_params(message.params)
            stats["train_payloads"].append({"request_id": message.request_id, "bytes": size, "sha256": sha})
            reply(
                TrainReply(
                    request_id=message.request_id,
                    researcher_id=rid,
                    experiment_id=message.experiment_id,
                    success=True,
                    node_id=args.id,
                    node_name=node_name,
                    dataset_id=message.dataset_id,
                    timing={"rtime_training": 0.0},
                    msg="echo",
                    sample_size=0,
                    params=message.params,
                )
            )
        else:
            reply(
                ErrorMessage(
                    request_id=getattr(message, "request_id", None),
                    researcher_id=rid,
                    node_id=args.id,
                    node_name=node_name,
                    extra_msg=f"fbm_node does not handle {name}",
                    errnum=ErrorNumbers.FB300.name,
                )
            )
        if not args.no_feedback:
            # Fed-BioMed's logger: the gRPC handler sends this as FeedbackMessage.log
            # to the researcher named here (a record without researcher_id is lost).
            logger.info(f"fbm_node {args.id} handled {name} {getattr(message, 'request_id', '')}", researcher_id=rid)

    started = time.monotonic()
    handled = 0
    while not stop.is_set():
        if args.duration is not None and time.monotonic() - started >= args.duration:
            break
        if args.exit_after is not None and handled >= args.exit_after:
            # Let the last replies leave before stopping.
            time.sleep(1.0)
            break
        try:
            raw = inbox.get(timeout=0.2)
        except queue.Empty:
            continue
        handle(raw)
        handled += 1

    ok = not stats["errors"]
    common.result_line({"program": PROG, "ok": ok, "node_id": args.id, "handled": handled, **stats})
    sys.stdout.flush()
    os._exit(0 if ok else 1)


if __name__ == "__main__":
    main()
