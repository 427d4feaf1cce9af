#!/usr/bin/env python3
"""Writes the model to ship (models/fmnist-small.safetensors) from a training run's model.safetensors:
the EMA weights become the weights (what `diffuse sample` uses by default anyway), the raw weights
and any ema/ or train/ tensors are dropped, the metadata (config, schedule, steps) is kept and a
`ship.source` entry records where it came from. Half the size of the run's file.
Usage: tools/ship_model.py runs/ship/eps-simple/model.safetensors models/fmnist-small.safetensors"""
import json
import os
import struct
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    blob = open(src, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    names = [k for k in header if not k.startswith("ema/") and not k.startswith("train/")]
    out_header, parts, offset = {}, [], 0
    for name in names:
        info = header.get("ema/" + name, header[name])  # the EMA copy when there is one
        begin, end = info["data_offsets"]
        parts.append(data[begin:end])
        out_header[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [offset, offset + end - begin]}
        offset += end - begin
    meta["ship.source"] = "EMA weights of %s" % os.path.basename(os.path.dirname(os.path.abspath(src)))
    out_header["__metadata__"] = meta
    h = json.dumps(out_header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(parts))
    os.replace(tmp, dst)
    print("wrote %s: %d tensors, %d bytes" % (dst, len(names), os.path.getsize(dst)))


main()
