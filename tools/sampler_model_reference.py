#!/usr/bin/python3
"""sampler_model_reference.py: DPM-Solver++(2M) and UniPC on a stored model, for tests/test_diffusion.c.

The solvers are tools/dpm_reference.py's (NumPy, float64, written from the papers); the network is
the shipped models/fmnist-small.safetensors run by tools/make_unet_fixtures.py's plain-PyTorch
UNet2DModel in float64 (the weights are float32, exact in float64), so neither the C samplers nor
the C U-Net is involved. From 4 fixed x_T it writes tests/fixtures/sampler_fmnist.safetensors:
  xT (4, 1, 28, 28); dpmpp2m_10, unipc_10 (4, 1, 28, 28): x_0 after 10 steps, no clipping;
  __metadata__: model, steps, seed.
The C test loads the same model file, runs df_sample from xT and compares.

    /usr/bin/python3 tools/sampler_model_reference.py
"""
import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dpm_reference as dr  # noqa: E402
import make_unet_fixtures as mu  # noqa: E402

MODEL = os.path.join(HERE, "..", "models", "fmnist-small.safetensors")
OUT = os.path.join(HERE, "..", "tests", "fixtures", "sampler_fmnist.safetensors")
STEPS = 10
SEED = 7


def load_model(path):
    blob = open(path, "rb").read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__")
    cfg = mu.unet_config(**{k: v for k, v in json.loads(meta["unet.config"]).items() if not k.startswith("_")})
    assert meta["diffusion.schedule"] == "linear" and meta["diffusion.pred"] == "eps", meta
    assert int(meta["diffusion.timesteps"]) == dr.T
    assert float(meta["diffusion.beta_start"]) == 1e-4 and float(meta["diffusion.beta_end"]) == 0.02
    model = mu.UNet2DModel(cfg)
    state = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        assert info["dtype"] == "F32"
        state[name] = torch.from_numpy(np.frombuffer(blob[8 + n + b:8 + n + e], "<f4").reshape(info["shape"]).copy())
    model.load_state_dict(state, strict=True)
    return model.double().eval(), cfg


def main():
    model, cfg = load_model(MODEL)
    ab = dr.schedule()
    rng = np.random.default_rng(SEED)
    s = cfg["sample_size"]
    xT = rng.standard_normal((4, cfg["in_channels"], s, s)).astype(np.float32)

    def x0_fn(x, t):
        with torch.no_grad():
            tt = torch.full((x.shape[0],), int(t), dtype=torch.int64)
            eps = model(torch.from_numpy(x), tt).numpy()
        return (x - np.sqrt(1 - ab[t]) * eps) / np.sqrt(ab[t])

    tensors = [("xT", xT)]
    for name, solver in (("dpmpp2m", dr.dpmpp_2m), ("unipc", dr.unipc)):
        x0 = solver(xT.astype(np.float64), STEPS, "eps", ab, x0_fn=x0_fn)
        tensors.append(("%s_%d" % (name, STEPS), x0.astype(np.float32)))
        print("%s %d steps: x0 in [%.3f, %.3f]" % (name, STEPS, x0.min(), x0.max()))
    meta = {"generator": "tools/sampler_model_reference.py", "model": "models/fmnist-small.safetensors",
            "steps": str(STEPS), "seed": str(SEED), "torch_version": torch.__version__}
    mu.safetensors_write(OUT, tensors, meta)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
