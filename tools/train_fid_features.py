#!/usr/bin/python3
"""train_fid_features.py: trains the Fashion-MNIST feature network of `diffuse fid --features fmnist`
and writes it, with the reference fixture that tests/test_fid_net.c compares the C forward against.

The network (src/metrics/fmnist_net.c is its C twin; keep the two in step):
    x (N,1,28,28) in [-1,1] (pixel / 127.5 - 1, the scaling of the diffusion models' samples)
    conv1 3x3 1->32 pad 1, ReLU, max-pool 2        -> (N,32,14,14)
    conv2 3x3 32->64 pad 1, ReLU, max-pool 2       -> (N,64,7,7)
    flatten (c*49 + h*7 + w), fc1 3136->128, ReLU  -> the 128-d FID features
    fc2 128->10                                    -> class logits
Trained on Debian's dataset-fashion-mnist (the IDX files under /usr/share/datasets/fashion-mnist)
with Adam, batch 128, a cosine learning-rate decay, for --epochs epochs or --minutes minutes,
whichever ends first; no augmentation. Seeded (torch.manual_seed), on --threads CPU threads.

Writes (the safetensors writer below; no safetensors package is needed):
  models/fid-fmnist.safetensors: conv1.weight, conv1.bias, conv2.weight, conv2.bias, fc1.weight,
    fc1.bias, fc2.weight, fc2.bias (F32, PyTorch layout) and __metadata__ describing the network,
    its input scaling, the training run and its test accuracy.
  tests/fixtures/fid_fmnist_ref.safetensors: x (8,1,28,28): six test images and two synthetic
    inputs (uniform noise in [-1,1], an all -1 image); features (8,128) and logits (8,10) of the
    network on them, computed in float64 from the float32 weights; pred_1000 (1000): the predicted
    class of the first 1000 test images (float32 values), again in float64.
  tests/data/fid_fmnist16_f4.npy, fid_fmnist16_u1.npy: the first 16 test images as float32
    N x 1 x 28 x 28 in [-1,1] and as uint8 N x 28 x 28 x 1 (the layout `diffuse sample --out x.npy`
    writes), for tests/cli_fid.sh.

Usage:
    /usr/bin/python3 tools/train_fid_features.py [--minutes 6] [--epochs 6] [--threads 2] [--seed 0]
    /usr/bin/python3 tools/train_fid_features.py --fixture-only     (fixture from the existing model)
"""
import argparse
import gzip
import json
import os
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = ("conv3x3(1->32,pad1) relu maxpool2 conv3x3(32->64,pad1) relu maxpool2 flatten "
        "linear(3136->128) relu [features] linear(128->10)")


def read_idx(name):
    """An IDX file of Debian's package (gzipped) as a numpy array."""
    path = os.path.join(DATA, name)
    raw = gzip.open(path, "rb").read() if os.path.exists(path) else open(path[:-3], "rb").read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(prefix + "-images-idx3-ubyte.gz").astype(np.float32) / np.float32(127.5) - np.float32(1)
    y = read_idx(prefix + "-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x[:, None].copy()), torch.from_numpy(y.copy())


class FeatureNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x):
        f = self.features(x)
        return f, self.fc2(f)


def accuracy(net, x, y, batch=1000):
    net.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            right += (net(x[i:i + batch])[1].argmax(1) == y[i:i + batch]).sum().item()
    return right / len(x)


def train(args):
    torch.manual_seed(args.seed)
    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    net = FeatureNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * steps_per_epoch)
    t0, epochs_done = time.time(), 0
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            loss = F.cross_entropy(net(xtr[idx])[1], ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if time.time() - t0 > args.minutes * 60:
                break
        epochs_done = epoch + 1 if i + args.batch >= len(xtr) else epoch + i / len(xtr)
        acc = accuracy(net, xte, yte)
        print("epoch %d: loss %.4f, test accuracy %.4f, %.0f s" % (epoch + 1, loss.item(), acc, time.time() - t0),
              flush=True)
        if time.time() - t0 > args.minutes * 60:
            break
    seconds = time.time() - t0
    acc = accuracy(net, xte, yte)
    meta = {
        "format": "diffuse.featnet", "featnet": "fmnist", "architecture": ARCH,
        "input": "1x28x28, pixel/127.5 - 1 (in [-1,1])", "feature_dim": "128", "n_classes": "10",
        "feature_layer": "relu(fc1), the input of fc2",
        "test_accuracy": "%.4f" % acc,
        "train": "fashion-mnist train (60000), Adam lr 1e-3 cosine, batch %d, %.2f epochs, %.0f s on %d threads, "
                 "seed %d, torch %s" % (args.batch, epochs_done, seconds, args.threads, args.seed, torch.__version__),
    }
    params = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    safetensors_write(args.out, params, meta)
    print("test accuracy %.4f after %.2f epochs in %.0f s; wrote %s" % (acc, epochs_done, seconds, args.out))


def forward64(params, x):
    """The network in float64 from float32 weights: the reference the C float32 forward is held to."""
    p = {k: torch.from_numpy(v.astype(np.float64)) for k, v in params.items()}
    h = F.max_pool2d(F.relu(F.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, p["conv2.weight"], p["conv2.bias"], padding=1)), 2)
    f = F.relu(F.linear(h.flatten(1), p["fc1.weight"], p["fc1.bias"]))
    return f, F.linear(f, p["fc2.weight"], p["fc2.bias"])


def write_fixture(model_path, path):
    params, meta = safetensors_read(model_path)
    xte, _ = load_split("test")
    gen = torch.Generator().manual_seed(1)
    noise = torch.rand(1, 1, 28, 28, generator=gen) * 2 - 1
    x = torch.cat([xte[:6], noise, -torch.ones(1, 1, 28, 28)]).to(torch.float32)
    with torch.no_grad():
        feats, logits = forward64(params, x.double())
        pred = forward64(params, xte[:1000].double())[1].argmax(1)
    out = {"x": x.numpy(), "features": feats.float().numpy(), "logits": logits.float().numpy(),
           "pred_1000": pred.float().numpy()}
    fmeta = {"model": os.path.basename(model_path), "model_test_accuracy": meta.get("test_accuracy", "?"),
             "generator": "tools/train_fid_features.py (float64 forward of the float32 weights)",
             "torch_version": torch.__version__}
    safetensors_write(path, out, fmeta)
    print("wrote %s (features range %.3f..%.3f)" % (path, feats.min().item(), feats.max().item()))
    # the first 16 test images as the two .npy forms `diffuse fid` reads (tests/cli_fid.sh)
    data = os.path.join(ROOT, "tests", "data")
    np.save(os.path.join(data, "fid_fmnist16_f4.npy"), xte[:16].numpy())
    u8 = read_idx("t10k-images-idx3-ubyte.gz")[:16, :, :, None]
    np.save(os.path.join(data, "fid_fmnist16_u1.npy"), np.ascontiguousarray(u8))


def safetensors_write(path, tensors, metadata):
    """The safetensors format: u64 header length, JSON header (padded to 8 bytes), the data."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def safetensors_read(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(blob[8 + n + b:8 + n + e], dtype=np.float32).reshape(info["shape"])
    return out, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=6)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "fid-fmnist.safetensors"))
    ap.add_argument("--fixture", default=os.path.join(ROOT, "tests", "fixtures", "fid_fmnist_ref.safetensors"))
    ap.add_argument("--fixture-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not args.fixture_only:
        train(args)
    write_fixture(args.out, args.fixture)


if __name__ == "__main__":
    main()
