#!/usr/bin/env python3
"""Scenario 3 (bytes): Fed-BioMed's own codec against fedroute's, file by file.

    fbm_bytes.py write OUT_DIR
        Writes, for every message class fedroute types, a message made by
        Fed-BioMed 6.4.1 (`Message` dataclass -> to_dict -> Serializer.dumps):
        OUT_DIR/<Class>.msgpack, plus a readable OUT_DIR/<Class>.msgpack.json,
        and FeedbackMessage protobufs (log and scalar) as
        OUT_DIR/FeedbackMessage_<kind>.pb (+ .json). fedroute must decode each.

    fbm_bytes.py check IN_DIR [--expect-class C ...] [--allow-reordered]
        Reads every *.msgpack file (made by fedroute) and checks it the way a
        Fed-BioMed peer receives it: Serializer.loads then
        fedbiomed.common.message.Message.from_dict (class known, protocol
        version compatible, every required field present, no unknown field,
        field types accepted). Then re-encodes the message with Fed-BioMed
        (Serializer.dumps(msg.to_dict())) and requires the same bytes: same
        key order (the dataclass order, __type_message__ last) and the same
        msgpack encodings. *.pb files are parsed as researcher.FeedbackMessage
        and go through FeedbackMessage.from_proto.

Both print per-file lines on stderr, one JSON result line on stdout, and exit
0 only on success (check: at least one file, every file passes, every
--expect-class present).
"""

import argparse
import glob
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbm_common as common  # noqa: E402

PROG = "fbm_bytes"

# The message classes fedroute types (CONTRACT.md, wire/message).
TYPED_CLASSES = [
    "PingRequest",
    "PingReply",
    "ListRequest",
    "ListReply",
    "SearchRequest",
    "SearchReply",
    "ErrorMessage",
    "ApprovalRequest",
    "ApprovalReply",
    "TrainRequest",
    "TrainReply",
    "OverlayMessage",
]

RESEARCHER_ID = "RESEARCHER_2f6c1b5e-0c7e-4d8e-9a57-3f1f0d6a1c11"
NODE_ID = "NODE_interop-0001"
NODE_NAME = "interop-node"
REQUEST_ID = "6c2a7d41-5b8e-4f0a-9d3c-1e2f3a4b5c6d"


def json_view(value):
    """A JSON-able view of a decoded msgpack tree (bytes as hex, like shared/wire/samples)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_view(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_view(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        head = bytes(value[:32]).hex()
        return {"$bytes_hex": head, "$len": len(value)}
    if isinstance(value, np.ndarray):
        return {"$ndarray": {"dtype": value.dtype.name, "shape": list(value.shape), "bytes_hex": value.tobytes()[:32].hex()}}
    return value


def raw_tree(data):
    """The msgpack tree without Fed-BioMed's object hook (ndarrays stay maps)."""
    import msgpack

    return msgpack.unpackb(data, strict_map_key=False, raw=False)


def build_messages():
    """One Fed-BioMed message per typed class, with representative values."""
    import numpy as np
    from fedbiomed.common import message as m

    params = {
        "coef": np.arange(12, dtype=np.float32).reshape(3, 4),
        "bias": np.array([0.5, -1.25], dtype=np.float64),
        "blob": np.frombuffer(bytes(range(256)) * 4, dtype=np.uint8).copy(),
    }
    databases = [
        {"name": "cohort", "data_type": "csv", "tags": ["#a", "#b"], "description": "d", "shape": [100, 4], "dataset_id": "dataset_cohort", "dtypes": ["float64"]},
    ]
    common_req = dict(researcher_id=RESEARCHER_ID, request_id=REQUEST_ID)
    common_rep = dict(researcher_id=RESEARCHER_ID, request_id=REQUEST_ID, node_id=NODE_ID, node_name=NODE_NAME)
    return {
        "PingRequest": m.PingRequest(**common_req),
        "PingReply": m.PingReply(**common_rep),
        "ListRequest": m.ListRequest(**common_req),
        "ListReply": m.ListReply(**common_rep, success=True, databases=databases, count=1),
        "SearchRequest": m.SearchRequest(**common_req, tags=["#a", "#b"]),
        "SearchReply": m.SearchReply(**common_rep, databases=databases, count=1),
        "ErrorMessage": m.ErrorMessage(**common_rep, extra_msg="fedroute interop: not handled", errnum="FB300"),
        "ApprovalRequest": m.ApprovalRequest(**common_req, description="approve me", training_plan="class TP:\n    pass\n"),
        "ApprovalReply": m.ApprovalReply(
            **common_rep, training_plan_id=None, message="", status=0, success=True
        ),
        "TrainRequest": m.TrainRequest(
            **common_req,
            experiment_id="exp-1",
            state_id=None,
            training_args={"epochs": 2, "lr": 0.01, "loader_args": {"batch_size": 8}},
            dataset_id="dataset_cohort",
            training=True,
            model_args={"n_features": 4},
            params=params,
            training_plan="class InteropTP:\n    pass\n",
            training_plan_class="InteropTP",
            round=3,
            aggregator_args={},
            secagg_arguments=None,
            optim_aux_var=None,
        ),
        "TrainReply": m.TrainReply(
            **common_rep,
            experiment_id="exp-1",
            success=True,
            dataset_id="dataset_cohort",
            timing={"rtime_training": 1.5, "ptime_training": 1.25},
            msg="",
            state_id="state-1",
            sample_size=100,
            encrypted=False,
            params=params,
            optimizer_args={"lr": 0.01},
            optim_aux_var=None,
            encryption_factor=None,
        ),
        "OverlayMessage": m.OverlayMessage(
            researcher_id=RESEARCHER_ID,
            node_id=NODE_ID,
            dest_node_id="NODE_interop-0002",
            overlay=bytes(range(64)),
            setup=True,
            salt=bytes(16),
            nonce=bytes(range(12)),
        ),
    }


def build_feedback():
    from fedbiomed.common import message as m

    log = m.FeedbackMessage(
        researcher_id=RESEARCHER_ID,
        log=m.Log(
            node_id=NODE_ID,
            level="INFO",
            msg=json.dumps(
                {"asctime": "2026-01-01 00:00:00,000", "node_id": NODE_ID, "name": "fedbiomed", "level": "INFO", "message": "interop log line"}
            ),
        ),
    )
    scalar = m.FeedbackMessage(
        researcher_id=RESEARCHER_ID,
        scalar=m.Scalar(
            node_id=NODE_ID,
            node_name=NODE_NAME,
            experiment_id="exp-1",
            train=True,
            test=False,
            test_on_local_updates=False,
            test_on_global_updates=False,
            metric={"loss": 0.25},
            total_samples=100,
            batch_samples=8,
            num_batches=13,
            iteration=2,
            epoch=1,
            num_samples_trained=16,
        ),
    )
    return {"log": log, "scalar": scalar}


def cmd_write(args):
    from fedbiomed.common.serializer import Serializer
    from google.protobuf.json_format import MessageToDict

    os.makedirs(args.dir, exist_ok=True)
    written = []
    for cls, msg in build_messages().items():
        data = Serializer.dumps(msg.to_dict())
        path = os.path.join(args.dir, f"{cls}.msgpack")
        with open(path, "wb") as f:
            f.write(data)
        with open(path + ".json", "w") as f:
            json.dump({"class": cls, "msgpack_len": len(data), "decoded": json_view(raw_tree(data))}, f, indent=2)
        written.append(os.path.basename(path))
        common.log(PROG, f"wrote {path} ({len(data)} bytes)")
    for kind, fb in build_feedback().items():
        proto = fb.to_proto()
        data = proto.SerializeToString()
        path = os.path.join(args.dir, f"FeedbackMessage_{kind}.pb")
        with open(path, "wb") as f:
            f.write(data)
        with open(path + ".json", "w") as f:
            json.dump({"proto": "researcher.FeedbackMessage", "fields": MessageToDict(proto, preserving_proto_field_name=True), "raw_hex": data.hex()}, f, indent=2)
        written.append(os.path.basename(path))
        common.log(PROG, f"wrote {path} ({len(data)} bytes)")
    common.result_line({"program": PROG, "command": "write", "ok": True, "dir": args.dir, "files": written})
    return 0


def key_order(tree):
    return list(tree.keys()) if isinstance(tree, dict) else None


def check_msgpack(path, allow_reordered):
    from fedbiomed.common.message import Message
    from fedbiomed.common.serializer import Serializer

    with open(path, "rb") as f:
        data = f.read()
    res = {"file": os.path.basename(path), "bytes": len(data)}
    try:
        tree = Serializer.loads(data)
    except Exception as exc:  # noqa: BLE001 - reported
        return {**res, "ok": False, "error": f"Serializer.loads: {exc!r}"}
    res["class"] = (tree.get("__type_message__") or {}).get("class") if isinstance(tree, dict) else None
    try:
        msg = Message.from_dict(tree)
    except Exception as exc:  # noqa: BLE001 - reported
        return {**res, "ok": False, "error": f"Message.from_dict: {exc!r}"}
    again = Serializer.dumps(msg.to_dict())
    res["byte_identical"] = again == data
    if not res["byte_identical"]:
        ours, theirs = raw_tree(data), raw_tree(again)
        res["fedroute_key_order"] = key_order(ours)
        res["fedbiomed_key_order"] = key_order(theirs)
        res["same_values"] = ours == theirs
        if not allow_reordered:
            return {**res, "ok": False, "error": "Fed-BioMed re-encodes these values to different bytes"}
    return {**res, "ok": True}


def check_proto(path):
    from fedbiomed.common.message import FeedbackMessage
    from fedbiomed.transport.protocols import researcher_pb2

    with open(path, "rb") as f:
        data = f.read()
    res = {"file": os.path.basename(path), "bytes": len(data), "class": "FeedbackMessage"}
    try:
        proto = researcher_pb2.FeedbackMessage.FromString(data)
        which = proto.WhichOneof("feedback_type")
        if which is None:
            return {**res, "ok": False, "error": "no feedback_type (log or scalar) set"}
        fb = FeedbackMessage.from_proto(proto)
        # The researcher's Feedback handler: on_message(feedback.get_param(one_of), ...)
        inner = fb.get_param(which)
        res["feedback_type"] = which
        if which == "log":
            # Fed-BioMed's researcher prints json.loads(msg)["message"].
            json.loads(inner.msg)["message"]
        res["byte_identical"] = fb.to_proto().SerializeToString() == data
    except Exception as exc:  # noqa: BLE001 - reported
        return {**res, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {**res, "ok": True}


def cmd_check(args):
    files = sorted(glob.glob(os.path.join(args.dir, "*.msgpack")) + glob.glob(os.path.join(args.dir, "*.pb")))
    results = []
    for path in files:
        r = check_proto(path) if path.endswith(".pb") else check_msgpack(path, args.allow_reordered)
        results.append(r)
        common.log(PROG, f"{'PASS' if r['ok'] else 'FAIL'} {r['file']} {r.get('class')} {r.get('error', '')}")
    seen = {r.get("class") for r in results if r["ok"]}
    missing = [c for c in args.expect_class if c not in seen]
    for c in missing:
        common.log(PROG, f"FAIL no valid file of class {c}")
    ok = bool(results) and all(r["ok"] for r in results) and not missing
    common.result_line(
        {
            "program": PROG,
            "command": "check",
            "ok": ok,
            "dir": args.dir,
            "passed": sum(1 for r in results if r["ok"]),
            "failed": sum(1 for r in results if not r["ok"]) + len(missing),
            "missing_classes": missing,
            "files": results,
        }
    )
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timeout", type=float, default=120, help="hard bound in seconds (default 120)")
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write Fed-BioMed-made messages for fedroute to decode")
    w.add_argument("dir")
    c = sub.add_parser("check", help="check fedroute-made messages with Fed-BioMed")
    c.add_argument("dir")
    c.add_argument("--expect-class", action="append", default=[], help="a class that must be present; repeatable; 'typed' = all 12")
    c.add_argument("--allow-reordered", action="store_true", help="accept files Fed-BioMed re-encodes to other bytes")
    args = ap.parse_args()
    common.hard_timeout(PROG, args.timeout)
    if args.command == "write":
        code = cmd_write(args)
    else:
        if "typed" in args.expect_class:
            args.expect_class = [c for c in args.expect_class if c != "typed"] + TYPED_CLASSES
        code = cmd_check(args)
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
