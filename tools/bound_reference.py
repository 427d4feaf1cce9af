#!/usr/bin/python3
"""bound_reference.py: an independent NumPy computation of the variational bound (Ho et al. 2020,
section 3.3) that tests/test_bound.c checks src/diffusion/bound.c against.

What it is: the bound, term by term, for a closed-form "network" (out = a * x_t + b * t / T, with
(a, b) per parameterisation, the same formula tests/test_bound.c implements as a df_predict_fn), on
two tiny 8-bit images (1x4x4, discretised decoder, with and without x0 clipping) and three 2-D points
(continuous decoder), for T = 50, linear and cosine schedules, all four parameterisations and both
variance choices. The noise eps for every (sample, t) comes from NumPy and is stored in the fixture;
the C test feeds it through df_bound_params.noise_fn so that both sides use the same x_t.
What it is not: a copy of src/diffusion/bound.c. It derives everything from the definitions: the schedule from
its formulas, KL(q(x_{t-1}|x_t,x_0) || N(mu_theta, sigma^2)) by subtracting the two means, the
decoder from the normal CDF (math.erfc), the prior as a KL against N(0, I).

Writes tests/fixtures/bound_reference.safetensors (run: /usr/bin/python3 tools/bound_reference.py).
Tensor "terms/<schedule>/<pred>/<var>/<data>" is float64 [n, T + 1]: column i (0-based step index,
i = t - 1) holds the decoder L_0 for i = 0 and L_{t-1} = KL at t = i + 1 for i >= 1; column T holds
the prior L_T. All in nats per sample (summed over dimensions).
"""
import json
import math
import os
import struct
import sys

import numpy as np

VERSION = "2"
T = 50
LINEAR = dict(beta_start=1e-4, beta_end=0.1)
COSINE = dict(s=0.008, max_beta=0.999)
# out = a * x_t + b * (i + 1) / T: deliberately imperfect so that every term is far from zero
NET = {"eps": (0.6, 0.2), "x0": (0.8, -0.1), "mean": (0.95, 0.05), "v": (0.5, 0.3)}
PREDS = ["eps", "x0", "mean", "v"]
VARS = ["posterior", "beta"]
SUBSET_K = 7
SEED = 20240611


def schedule(kind):
    """Every array indexed i = t - 1, from the definitions (diffusion-math.md)."""
    if kind == "linear":
        u = np.arange(T) / (T - 1)
        beta = LINEAR["beta_start"] + (LINEAR["beta_end"] - LINEAR["beta_start"]) * u
    else:  # Nichol & Dhariwal 2021, eq. 17, betas clipped at max_beta
        def f(t):
            return math.cos(((t / T + COSINE["s"]) / (1 + COSINE["s"])) * math.pi / 2) ** 2
        beta = np.array([min(1 - f(t) / f(t - 1), COSINE["max_beta"]) for t in range(1, T + 1)])
    alpha = 1 - beta
    ab = np.cumprod(alpha)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    post_var = beta * (1 - ab_prev) / (1 - ab)
    c0 = np.sqrt(ab_prev) * beta / (1 - ab)
    ct = np.sqrt(alpha) * (1 - ab_prev) / (1 - ab)
    return dict(beta=beta, ab=ab, post_var=post_var, c0=c0, ct=ct)


def model_var(s, var, i):
    if i == 0:  # both choices use the posterior variance of t = 2 at t = 1 (DDPM code)
        return s["post_var"][1]
    return s["beta"][i] if var == "beta" else s["post_var"][i]


def network(pred, xt32, i):
    a, b = NET[pred]
    return (a * xt32.astype(np.float64) + b * (i + 1) / T).astype(np.float32)


def x0_from_output(s, pred, i, xt, o):
    sa, s1 = math.sqrt(s["ab"][i]), math.sqrt(1 - s["ab"][i])
    if pred == "eps":
        return (xt - s1 * o) / sa
    if pred == "x0":
        return o
    if pred == "v":  # v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022)
        return sa * xt - s1 * o
    return (o - s["ct"][i] * xt) / s["c0"][i]  # mean = c0 x0 + ct x_t


def model_mean(s, pred, i, xt, o, clip):
    if pred == "mean" and not clip:
        return o
    x0h = x0_from_output(s, pred, i, xt, o)
    if clip:
        x0h = np.clip(x0h, -1, 1)
    return s["c0"][i] * x0h + s["ct"][i] * xt


def kl(m1, v1, m2, v2):
    return float(np.sum(0.5 * (math.log(v2 / v1) + v1 / v2 - 1 + (m1 - m2) ** 2 / v2)))


def phi(z):
    return 0.5 * math.erfc(-z / math.sqrt(2))


def log_bin(x, mean, var):
    """log P(pixel bin of x) under N(mean, var): bins of width 2/255, edge bins open (DDPM)."""
    sd = math.sqrt(var)
    hi, lo = (x - mean + 1 / 255) / sd, (x - mean - 1 / 255) / sd
    if x < -0.999:
        p = phi(hi)
    elif x > 0.999:
        p = phi(-lo)
    elif lo > 0:
        p = phi(-lo) - phi(-hi)
    else:
        p = phi(hi) - phi(lo)
    return math.log(max(p, 1e-12))


def terms(s, pred, var, x0, eps, discrete, clip):
    n, dim = x0.shape
    out = np.zeros((n, T + 1))
    x0d = x0.astype(np.float64)
    for j in range(n):
        for i in range(T):
            sa, s1 = math.sqrt(s["ab"][i]), math.sqrt(1 - s["ab"][i])
            xt32 = (sa * x0d[j] + s1 * eps[j, i].astype(np.float64)).astype(np.float32)
            xt = xt32.astype(np.float64)
            o = network(pred, xt32, i).astype(np.float64)
            mu = model_mean(s, pred, i, xt, o, clip)
            v = model_var(s, var, i)
            if i == 0:
                if discrete:
                    out[j, 0] = -sum(log_bin(x0d[j, k], mu[k], v) for k in range(dim))
                else:
                    out[j, 0] = float(np.sum(0.5 * math.log(2 * math.pi * v) + (x0d[j] - mu) ** 2 / (2 * v)))
            else:
                mu_q = s["c0"][i] * x0d[j] + s["ct"][i] * xt
                out[j, i] = kl(mu_q, s["post_var"][i], mu, v)
        ab = s["ab"][T - 1]
        out[j, T] = kl(math.sqrt(ab) * x0d[j], 1 - ab, np.zeros(dim), 1.0)
    return out


def write_safetensors(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}[arr.dtype]
        b = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(tmp, path)


def subset_strata(T, K):
    """K strata of t in 2..T with geometrically rising starts (each at least one t wide): the middle t
    of each and its width, as df_bound_timesteps defines them."""
    starts = [2]
    for k in range(1, K):
        lo = int(math.floor(2.0 * ((T + 1) / 2.0) ** (k / K) + 0.5))
        lo = min(max(lo, starts[-1] + 1), T + 1 - (K - k))
        starts.append(lo)
    starts.append(T + 1)
    return [(starts[k] + starts[k + 1] - 1) // 2 for k in range(K)], [starts[k + 1] - starts[k] for k in range(K)]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "bound_reference.safetensors")
    rng = np.random.default_rng(SEED)
    pixels = rng.integers(0, 256, size=(2, 16))
    pixels[0, :4] = [0, 255, 1, 254]  # both open edge bins and their neighbours
    pixels[1, :2] = [255, 0]
    images = (pixels / 127.5 - 1).astype(np.float32)
    points = np.array([[0.3, -1.2], [1.5, 0.7], [-0.4, 0.05]], dtype=np.float32)
    eps_images = rng.standard_normal((2, T, 16)).astype(np.float32)
    eps_points = rng.standard_normal((3, T, 2)).astype(np.float32)
    tensors = {"x0/images": images, "x0/points": points, "eps/images": eps_images, "eps/points": eps_points}
    subset_t, subset_w = subset_strata(T, SUBSET_K)
    for kind in ["linear", "cosine"]:
        s = schedule(kind)
        for pred in PREDS:
            for var in VARS:
                for data, x0, eps, discrete, clip in [("images_clip", images, eps_images, True, True),
                                                      ("images_noclip", images, eps_images, True, False),
                                                      ("points", points, eps_points, False, False)]:
                    tm = terms(s, pred, var, x0, eps, discrete, clip)
                    tensors["terms/%s/%s/%s/%s" % (kind, pred, var, data)] = tm
                    if (kind, pred, var, data) == ("linear", "eps", "posterior", "images_clip"):
                        kl_sum = (tm[:, [t - 1 for t in subset_t]] * np.array(subset_w)).sum(axis=1)
                        tensors["subset/total"] = (tm[:, 0] + tm[:, T] + kl_sum).reshape(1, -1)
    meta = {"generator": "tools/bound_reference.py", "version": VERSION, "T": str(T),
            "linear": json.dumps(LINEAR), "cosine": json.dumps(COSINE), "net": json.dumps(NET),
            "subset_K": str(SUBSET_K), "subset_t": json.dumps(subset_t), "subset_w": json.dumps(subset_w)}
    write_safetensors(path, tensors, meta)
    print("wrote", path)


if __name__ == "__main__":
    main()
