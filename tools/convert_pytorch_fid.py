#!/usr/bin/python3
"""convert_pytorch_fid.py: pytorch-fid's Inception weights -> the safetensors file that
`diffuse fid --features inception --weights FILE` reads.

pytorch-fid (github.com/mseitzer/pytorch-fid) computes FID on Inception-v3 weights ported from
TensorFlow, pt_inception-2015-12-05-6726825d.pth (a PyTorch state_dict, 95 MB). It cannot be
downloaded from here; fetch it where you have the network, then:

    /usr/bin/python3 tools/convert_pytorch_fid.py pt_inception-2015-12-05-6726825d.pth models/fid-inception.safetensors
    build/diffuse fid samples.npy fashion-mnist:test --features inception --weights models/fid-inception.safetensors

The file keeps the 470 tensors the network uses, under pytorch-fid's names (<block>.<branch>.conv.weight,
.bn.weight, .bn.bias, .bn.running_mean, .bn.running_var; tools/fid_inception.py), as F32; it drops
fc.* (the 1008-class classifier, not part of the pool3 features) and the BatchNorms'
num_batches_tracked. Any other missing, extra or misshapen tensor stops the conversion. The
metadata says featnet=inception, the source file and its SHA-256 (pytorch-fid's file name carries
the first 8 hex digits: a mismatch is reported).
"""
import hashlib
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fid_inception as fi  # noqa: E402
from train_fid_features import safetensors_write  # noqa: E402

EXPECTED_SHA_PREFIX = "6726825d"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: tools/convert_pytorch_fid.py pt_inception-2015-12-05-6726825d.pth OUT.safetensors")
    src, dst = sys.argv[1], sys.argv[2]
    sha = hashlib.sha256(open(src, "rb").read()).hexdigest()
    if not sha.startswith(EXPECTED_SHA_PREFIX):
        print("warning: %s has SHA-256 %s..., not pytorch-fid's %s..." % (src, sha[:8], EXPECTED_SHA_PREFIX))
    sd = torch.load(src, map_location="cpu")
    if "state_dict" in sd and not any(k.endswith("conv.weight") for k in sd):
        sd = sd["state_dict"]
    model = fi.FIDInceptionV3()
    want = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    extra = [k for k in sd if k not in want and not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    missing = [k for k in want if k not in sd]
    shape = [k for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    if extra or missing or shape:
        sys.exit("%s is not pytorch-fid's Inception: extra %s, missing %s, wrong shape %s"
                 % (src, extra[:5], missing[:5], shape[:5]))
    tensors = {k: sd[k].detach().to(torch.float32).numpy() for k in want}
    for k, v in tensors.items():
        if not np.all(np.isfinite(v)):
            sys.exit("%s: tensor %s is not finite" % (src, k))
    meta = {"format": "diffuse.featnet", "featnet": "inception",
            "architecture": "pytorch-fid InceptionV3 (fid_inception_v3), output block 3: pool3, 2048 features",
            "input": "3xHxW in [-1,1], resized to 299x299 (bilinear)",
            "source": os.path.basename(src), "source_sha256": sha}
    safetensors_write(dst, tensors, meta)
    print("wrote %s: %d tensors, %d values" % (dst, len(tensors), sum(v.size for v in tensors.values())))


if __name__ == "__main__":
    main()
