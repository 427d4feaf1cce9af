#!/usr/bin/env python3
"""Writes x_T for an interpolation figure: two Gaussian draws x_a, x_b (N(0, I), C x H x W) and the
spherical interpolation between them, slerp(x_a, x_b, s) = sin((1-s) w)/sin w x_a + sin(s w)/sin w x_b,
w the angle between them, at `steps` evenly spaced s in [0, 1], as float32 steps x C x H x W .npy
(`diffuse sample --noise` reads it; with DDIM, eta 0, each row is a deterministic function of x_T).
Spherical rather than linear: a linear mix of two Gaussian vectors has a smaller norm than either
(about 0.71 of it halfway), which the model has never seen as x_T.

  /usr/bin/python3 tools/slerp_noise.py --out xT.npy --shape 1,28,28 --steps 10 --seed 3 [--pairs 4]
"""
import argparse
import numpy as np


def slerp(a, b, s):
    w = np.arccos(np.clip(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)), -1, 1))
    return (np.sin((1 - s) * w) * a + np.sin(s * w) * b) / np.sin(w)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--shape", default="1,28,28")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--pairs", type=int, default=1, help="rows of the figure: independent pairs (x_a, x_b)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    shape = tuple(int(v) for v in a.shape.split(","))
    rng = np.random.default_rng(a.seed)
    rows = []
    for _ in range(a.pairs):
        xa, xb = rng.standard_normal(int(np.prod(shape))), rng.standard_normal(int(np.prod(shape)))
        rows += [slerp(xa, xb, s) for s in np.linspace(0, 1, a.steps)]
    np.save(a.out, np.asarray(rows, dtype=np.float32).reshape((-1,) + shape))


if __name__ == "__main__":
    main()
