#!/usr/bin/env python
"""Regenerate ``distill/resources/tf14_ops.json``: the op registry of TensorFlow 1.4.0.

The TF 1.4 worker calls ``TF_GetAllOpList`` in the wheel's own library (a
subprocess; see ``distill/tf14.py``); this parent decodes the ``OpList`` proto
with TensorFlow 2's ``op_def_pb2`` and keeps what the static checker needs: per
op its inputs/outputs (dtype or type attr) and its attrs (type, default,
allowed values). Descriptions are dropped to keep the shipped file small.

    python scripts/extract_tf14_ops.py [--out distill/resources/tf14_ops.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill.compliance import tf14  # noqa: E402
from distill.core.io import write_text  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))



def attr_value_to_json(value, attr_type: str):
    """An AttrValue as plain JSON (dtype enums by name; tensors as a marker)."""
    from tensorflow.core.framework import types_pb2

    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "type":
        return types_pb2.DataType.Name(value.type)
    if kind in ("i", "f", "b"):
        return getattr(value, kind)
    if kind == "s":
        return value.s.decode("utf-8", "replace")
    if kind == "shape":
        if value.shape.unknown_rank:
            return {"unknown_rank": True}
        return [d.size for d in value.shape.dim]
    if kind == "tensor":
        return {"tensor": True}
    if kind == "list":
        lst = value.list
        if attr_type == "list(type)":
            return [types_pb2.DataType.Name(t) for t in lst.type]
        for field in ("s", "i", "f", "b"):
            items = list(getattr(lst, field))
            if items:
                return [x.decode("utf-8", "replace") if field == "s" else x for x in items]
        if len(lst.shape):
            return [[d.size for d in s.dim] for s in lst.shape]
        return []
    return {"unsupported": kind}


def arg_to_json(arg) -> dict:
    from tensorflow.core.framework import types_pb2

    out = {"name": arg.name}
    if arg.type:
        out["type"] = types_pb2.DataType.Name(arg.type)
    for field in ("type_attr", "number_attr", "type_list_attr"):
        if getattr(arg, field):
            out[field] = getattr(arg, field)
    if arg.is_ref:
        out["is_ref"] = True
    return out


def op_list_to_json(op_list_bytes: bytes) -> dict:
    from tensorflow.core.framework import op_def_pb2

    op_list = op_def_pb2.OpList.FromString(op_list_bytes)
    ops = {}
    for op in op_list.op:
        attrs = {}
        for attr in op.attr:
            entry = {"type": attr.type}
            if attr.HasField("default_value"):
                entry["default"] = attr_value_to_json(attr.default_value, attr.type)
            if attr.HasField("allowed_values"):
                entry["allowed"] = attr_value_to_json(attr.allowed_values, "list(type)" if "type" in attr.type else "list(string)")
            if attr.has_minimum:
                entry["minimum"] = attr.minimum
            attrs[attr.name] = entry
        ops[op.name] = {"inputs": [arg_to_json(a) for a in op.input_arg],
                        "outputs": [arg_to_json(a) for a in op.output_arg],
                        "attrs": attrs}
    return ops


def render(ops: dict, version: str, wheel: str) -> str:
    lines = ["{", f'"tf_version": {json.dumps(version)},',
             f'"source": {json.dumps("TF_GetAllOpList() of " + wheel + " via scripts/extract_tf14_ops.py")},',
             f'"op_count": {len(ops)},', '"ops": {']
    names = sorted(ops)
    for i, name in enumerate(names):
        comma = "," if i < len(names) - 1 else ""
        lines.append(f"{json.dumps(name)}:{json.dumps(ops[name], separators=(',', ':'), sort_keys=True)}{comma}")
    lines += ["}", "}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "distill" / "resources" / "tf14_ops.json"))
    args = parser.parse_args(argv)
    wheel = tf14.find_tf14_wheel()
    version = tf14.tf14_version()
    ops = op_list_to_json(tf14.tf14_op_list_bytes())
    text = render(ops, version, wheel.name)
    json.loads(text)  # must parse
    write_text(args.out, text)
    print(f"wrote {args.out}: {len(ops)} ops of TF {version}, {len(text.encode()) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
