#!/usr/bin/python3
"""make_inception_fixture.py: the reference for tests/test_fid_inception.c: pytorch-fid's
Inception-v3 pool3 features (tools/fid_inception.py, a plain-PyTorch torchvision Inception3 with
pytorch-fid's changes) on seeded pseudo-random weights that the C test regenerates from the same
seed, so the fixture holds only inputs and expected features, not 95 MB of weights.

Writes tests/fixtures/fid_inception_ref.safetensors: x_rgb (2,3,32,32), x_gray (1,1,28,28) and
x_rect (1,3,20,36), uniform in [-1, 1]; feat_rgb, feat_gray, feat_rect (N, 2048), computed in float64
from the float32 weights and inputs; metadata seed. Usage:
    /usr/bin/python3 tools/make_inception_fixture.py [OUT]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fid_inception as fi  # noqa: E402
from train_fid_features import safetensors_write  # noqa: E402

SEED = 1


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "fid_inception_ref.safetensors")
    torch.set_num_threads(2)
    model = fi.FIDInceptionV3().eval()
    model.load_state_dict(fi.seeded_state_dict(model, SEED))
    model = model.double()
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for name, shape in (("rgb", (2, 3, 32, 32)), ("gray", (1, 1, 28, 28)), ("rect", (1, 3, 20, 36))):
        x = (torch.rand(*shape, generator=g) * 2 - 1).float()
        with torch.no_grad():
            f = model(x.double())
        tensors["x_" + name] = x.numpy()
        tensors["feat_" + name] = f.float().numpy()
        print("%s: features %.4f..%.4f, mean %.4f" % (name, f.min().item(), f.max().item(), f.mean().item()))
    safetensors_write(out, tensors, {"seed": str(SEED), "generator": "tools/make_inception_fixture.py",
                                     "torch_version": torch.__version__})
    print("wrote", out)


if __name__ == "__main__":
    main()
