#!/usr/bin/env python3
"""DPM-Solver++(2M) and UniPC references for tests/test_diffusion.c. DPM-Solver++ is written from the paper (Lu et al. 2022,
"DPM-Solver++", Algorithm 2 with the data prediction) the way diffusers' DPMSolverMultistepScheduler
runs it by default (algorithm_type "dpmsolver++", solver_order 2, solver_type "midpoint",
timestep_spacing "linspace", final_sigmas_type "zero", lower_order_final), in float64 NumPy and in
the sigma parameterisation diffusers uses (sigma = sqrt((1 - alphabar) / alphabar)) rather than the C
code's VP form, so that the two are independent implementations of the same formulas.

The "network" is the exact optimal denoiser for 2-D Gaussian data (tests/oracle.h), so no weights are
involved (tools/sampler_model_reference.py runs the same solvers on the shipped U-Net, via x0_fn). Writes tests/fixtures/dpmpp2m_gauss.npy: float32 (cases, 2, N, 2): [case][0] = x_T,
[case][1] = the sampled x_0, for the cases listed in CASES (steps, prediction type).

UniPC (Zhao et al. 2023, "UniPC", Algorithms 2 and 3: the multistep UniP-p predictor and the UniC
corrector, data prediction, B(h) = e^h - 1 "bh2") is written for any order p, with the coefficient
vectors from a linear solve of R_p(h) a = phi_p(h) / B(h) as in the paper's Theorem 3.1, run as
diffusers' UniPCMultistepScheduler does by default (solver_order 2, linspace spacing, final sigma
zero, lower_order_final, the corrector after every step but the last, UniP-2's coefficient 1/2).
Writes tests/fixtures/unipc_gauss.npy with the same layout for UNIPC_CASES.

    /usr/bin/python3 tools/dpm_reference.py
"""
import os
import numpy as np

T = 1000
M = np.array([0.7, -1.2])
SD = np.array([0.5, 0.2])
N = 64
CASES = [(10, "eps"), (20, "v"), (5, "x0")]  # kept in the same order in test_diffusion.c
UNIPC_CASES = [(10, "eps"), (3, "v"), (6, "x0")]  # likewise


def schedule():
    betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def oracle_x0(x, ab):
    """E[x0 | x_t] for x0 ~ N(M, SD^2) per dimension."""
    sa, s1 = np.sqrt(ab), np.sqrt(1 - ab)
    eps = s1 * (x - sa * M) / (ab * SD * SD + 1 - ab)
    return (x - s1 * eps) / sa, eps


def network(x, ab, pred):
    """The oracle in the parameterisation `pred`, then back to x0, as a sampler would see it."""
    x0, eps = oracle_x0(x, ab)
    sa, s1 = np.sqrt(ab), np.sqrt(1 - ab)
    if pred == "eps":
        out = eps.astype(np.float32).astype(np.float64)
        return (x - s1 * out) / sa
    if pred == "v":
        out = (sa * eps - s1 * x0).astype(np.float32).astype(np.float64)
        return sa * x - s1 * out
    return x0.astype(np.float32).astype(np.float64)


def dpmpp_2m(x, steps, pred, ab_all, x0_fn=None):
    ts = np.linspace(0, T - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    sig = np.sqrt((1 - ab_all[ts]) / ab_all[ts])
    sig = np.append(sig, 0.0)  # final_sigmas_type "zero"

    def alpha_sigma(s):
        a = 1.0 / np.sqrt(s * s + 1.0)
        return a, s * a

    prev_x0, prev_lambda = None, None
    for k, t in enumerate(ts):
        x0 = x0_fn(x, t) if x0_fn else network(x, ab_all[t], pred)
        a_s, s_s = alpha_sigma(sig[k])
        a_t, s_t = alpha_sigma(sig[k + 1])
        lam_s = np.log(a_s) - np.log(s_s)
        last = k == len(ts) - 1
        if last:
            x = x0  # sigma_t = 0: alpha_t = 1, exp(-h) = 0
        else:
            lam_t = np.log(a_t) - np.log(s_t)
            h = lam_t - lam_s
            if prev_x0 is None:
                d = x0
            else:
                r0 = (lam_s - prev_lambda) / h
                d = x0 + 0.5 * (x0 - prev_x0) / r0
            x = (s_t / s_s) * x - a_t * (np.exp(-h) - 1.0) * d
        x = x.astype(np.float32).astype(np.float64)  # the C sampler keeps x in float32
        prev_x0, prev_lambda = x0, lam_s
    return x


def phi_coefficients(hh, order):
    """b_k = k! h phi_{k+1}(h) / B(h) for k = 1..order, with h phi_1 = e^h - 1 and
    h phi_{k+1} = h phi_k / h - 1/k! (the paper's recursion, h here the signed hh = -h)."""
    hphi = np.expm1(hh)
    b_h = np.expm1(hh)  # B(h), "bh2"
    out, fact = [], 1.0
    hphi_k = hphi / hh - 1.0  # h phi_2
    for k in range(1, order + 1):
        out.append(hphi_k * fact / b_h)
        fact *= k + 1
        hphi_k = hphi_k / hh - 1.0 / fact
    return np.array(out), hphi, b_h


def unipc(x, steps, pred, ab_all, order=2, x0_fn=None):
    ts = np.linspace(0, T - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    sig = np.append(np.sqrt((1 - ab_all[ts]) / ab_all[ts]), 0.0)

    def lam(s):
        return np.inf if s == 0 else -np.log(s)  # log(alpha / sigma) = -log(sigma_diffusers)

    def alpha_sigma(s):
        a = 1.0 / np.sqrt(s * s + 1.0)
        return a, s * a

    def advance(x_from, k_from, k_to, preds, ks, p, m_new=None):
        """x at sigma[k_to] from x_from at sigma[k_from]: UniP-p with the p - 1 older predictions
        preds[1:] (ks their indices), or UniC-p when m_new (the prediction at k_to) is given."""
        a_t, s_t = alpha_sigma(sig[k_to])
        a_s, s_s = alpha_sigma(sig[k_from])
        m0 = preds[0]
        if np.isinf(lam(sig[k_to])):
            return m0  # sigma_t = 0 (first order only): x = x0
        h = lam(sig[k_to]) - lam(sig[k_from])
        rks = [(lam(sig[ki]) - lam(sig[k_from])) / h for ki in ks[1:p]]
        d1s = [(mi - m0) / rk for mi, rk in zip(preds[1:p], rks)]
        b, hphi, b_h = phi_coefficients(-h, p)
        base = (s_t / s_s) * x_from - a_t * hphi * m0
        if m_new is None:  # predictor: p - 1 differences
            if p == 1:
                return base
            rho = np.array([0.5]) if p == 2 else np.linalg.solve(np.vander(rks, p - 1, increasing=True).T, b[:-1])
            return base - a_t * b_h * sum(r * d for r, d in zip(rho, d1s))
        rk_all = rks + [1.0]
        d_all = d1s + [m_new - m0]
        rho = np.array([0.5]) if p == 1 else np.linalg.solve(np.vander(rk_all, p, increasing=True).T, b)
        return base - a_t * b_h * sum(r * d for r, d in zip(rho, d_all))

    preds, ks, x_last, last_order = [], [], None, 0
    for k, t in enumerate(ts):
        m = x0_fn(x, t) if x0_fn else network(x, ab_all[t], pred)
        if k > 0:
            x = advance(x_last, k - 1, k, preds, ks, last_order, m_new=m)
            x = x.astype(np.float32).astype(np.float64)
        preds, ks = [m] + preds[: order - 1], [k] + ks[: order - 1]
        p = min(order, len(ts) - k, k + 1)
        x_last = x
        x = advance(x, k, k + 1, preds, ks, p).astype(np.float32).astype(np.float64)
        last_order = p
    return x


def write_fixture(name, cases, solver, rng, ab):
    """x_T from rng and the solver's x_0 for each (steps, pred) case, as float32 (cases, 2, N, 2)."""
    out = np.zeros((len(cases), 2, N, 2), np.float32)
    for c, (steps, pred) in enumerate(cases):
        xT = rng.standard_normal((N, 2)).astype(np.float32)
        out[c, 0] = xT
        out[c, 1] = solver(xT.astype(np.float64), steps, pred, ab)
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", name)
    np.save(path, out)
    print("wrote", os.path.normpath(path), out.shape)


def main():
    ab = schedule()
    rng = np.random.default_rng(1234)
    write_fixture("dpmpp2m_gauss.npy", CASES, dpmpp_2m, rng, ab)
    write_fixture("unipc_gauss.npy", UNIPC_CASES, unipc, rng, ab)


if __name__ == "__main__":
    main()
