#!/usr/bin/env python3
"""Prints, as Markdown, facts about Fed-BioMed 6.4.1's messages measured from
its own code (dataclass field order and types, required/optional, what
Message.from_dict accepts and rejects). Its output is pasted into
FEDBIOMED_FACTS.md; rerun it to refresh that section:

    PYTHONPATH=tests/interop/stubs tests/interop/.venv/bin/python tests/interop/fbm_facts.py
"""

import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbm_common as common  # noqa: E402,F401  (puts the torch stand-in on sys.path)
import fbm_bytes  # noqa: E402

common.hard_timeout("fbm_facts", 120)


def type_name(t):
    s = t.__name__ if isinstance(t, type) else str(t)
    return s.replace("typing.", "")


def fields_table(cls):
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            req = f"optional (default {f.default!r})"
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            req = "optional (default factory)"
        else:
            req = "**required**"
        rows.append(f"{f.name}: {type_name(f.type)} — {req}")
    return rows


def main():
    from fedbiomed.common import message as m
    from fedbiomed.common.serializer import Serializer

    print("## Message classes: field order and types (introspected)\n")
    print("Order = `to_dict()` key order = msgpack map order; `__type_message__` comes last.\n")
    names = fbm_bytes.TYPED_CLASSES + ["FeedbackMessage", "Log", "Scalar", "TaskRequest", "TaskResponse", "TaskResult"]
    others = sorted(
        n
        for n, c in vars(m).items()
        if isinstance(c, type) and issubclass(c, m.Message) and dataclasses.is_dataclass(c) and n not in names
        and n not in ("Message", "ProtoSerializableMessage", "RequestReply", "InnerMessage", "InnerRequestReply")
    )
    for n in names + others:
        cls = getattr(m, n)
        print(f"### {n}{'' if n in names else ' (not typed by fedroute)'}")
        for row in fields_table(cls):
            print(f"1. {row}")
        print()

    print("## What Message.from_dict accepts (measured)\n")
    msgs = fbm_bytes.build_messages()
    base = msgs["PingReply"].to_dict()

    def attempt(label, d):
        try:
            out = m.Message.from_dict(Serializer.loads(Serializer.dumps(d)))
            print(f"- {label}: accepted ({type(out).__name__})")
        except Exception as exc:  # noqa: BLE001 - that is the fact
            print(f"- {label}: **rejected** — {type(exc).__name__}: {str(exc)[:160]}")

    attempt("PingReply as Fed-BioMed makes it", dict(base))
    d = dict(base)
    d["extra_field"] = 1
    attempt("an unknown extra key", d)
    d = dict(base)
    del d["node_name"]
    attempt("a required key missing (node_name)", d)
    d = dict(base)
    del d["request_id"]
    attempt("request_id missing (defaults to None)", d)
    d = dict(base)
    d["request_id"] = None
    attempt("request_id = nil", d)
    d = dict(base)
    d["node_id"] = 5
    attempt("node_id is an int instead of str", d)
    d = dict(base)
    del d["protocol_version"]
    attempt("protocol_version missing", d)
    for v in ["7", "7.0", "7.1", "6", "8", "6.9"]:
        d = dict(base)
        d["protocol_version"] = v
        attempt(f"protocol_version = {v!r}", d)
    d = dict(base)
    d["__type_message__"] = {"module": "anything.else", "class": "PingReply"}
    attempt("__type_message__.module is another module", d)
    d = dict(base)
    d["__type_message__"] = {"class": "PingReply"}
    attempt("__type_message__ without module", d)
    d = dict(base)
    d["__type_message__"] = {"module": "fedbiomed.common.message", "class": "NoSuchClass"}
    attempt("an unknown class", d)
    d = msgs["ListReply"].to_dict()
    d["count"] = True
    attempt("ListReply.count = true (bool is an int in Python)", d)
    d = msgs["ListReply"].to_dict()
    d["success"] = 1
    attempt("ListReply.success = 1 (int is not a bool)", d)
    d = msgs["ListReply"].to_dict()
    d["count"] = 1.0
    attempt("ListReply.count = 1.0 (float)", d)
    d = msgs["SearchRequest"].to_dict()
    d["tags"] = {"__type__": "tuple", "value": ["#a"]}
    attempt("SearchRequest.tags as a tuple extension map", d)
    d = msgs["ErrorMessage"].to_dict()
    d["errnum"] = None
    attempt("ErrorMessage.errnum = nil", d)
    d = msgs["TrainReply"].to_dict()
    for k in ["state_id", "sample_size", "encrypted", "params", "optimizer_args", "optim_aux_var", "encryption_factor"]:
        d.pop(k)
    attempt("TrainReply with only its required fields", d)
    d = msgs["OverlayMessage"].to_dict()
    d["request_id"] = "x"
    attempt("OverlayMessage with a request_id", d)
    print()
    print(f"- protocol_version written by Fed-BioMed: {msgs['PingRequest'].to_dict()['protocol_version']!r} "
          f"(type {type(msgs['PingRequest'].to_dict()['protocol_version']).__name__})")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
