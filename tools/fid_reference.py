#!/usr/bin/python3
"""fid_reference.py: reference Frechet distances for tests/test_fid.c, by a method independent of the
one in src/metrics/fid.c (which uses symmetric eigendecompositions in double).

Here tr((S1 S2)^{1/2}) is the trace of the principal square root of the (non-symmetric) product
S1 S2, found by the Denman-Beavers iteration (Y <- (Y + Z^-1)/2, Z <- (Z + Y^-1)/2 from Y = S1 S2,
Z = I; Y tends to (S1 S2)^{1/2}) in 60-digit decimal arithmetic with exact 3x3 inverses. No numpy,
no scipy: only Python's decimal module. The inputs are small integer matrices S = A A^T (exact in
double), so the C test sees exactly the matrices used here.

Prints the C initialisers that tests/test_fid.c holds (the "fixture"):
    /usr/bin/python3 tools/fid_reference.py
"""
from decimal import Decimal, getcontext

getcontext().prec = 60

CASES = [
    # (name, A with S1 = A A^T, B with S2 = B B^T, mu1, mu2)
    ("noncommuting", [[2, 1, 0], [0, 1, 1], [1, 0, 3]], [[1, 0, 2], [1, 3, 0], [0, 1, 1]], [1, 0, -2], [0, 2, 1]),
    ("skewed", [[5, 0, 0], [4, 1, 0], [1, 2, 1]], [[1, 1, 1], [0, 2, -1], [0, 0, 3]], [0, 0, 0], [0.5, 0, 0]),
]


def matmul(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def transpose(a):
    return [[a[j][i] for j in range(3)] for i in range(3)]


def inverse(m):
    """The exact 3x3 inverse by the adjugate."""
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    adj = [[e * i - f * h, c * h - b * i, b * f - c * e],
           [f * g - d * i, a * i - c * g, c * d - a * f],
           [d * h - e * g, b * g - a * h, a * e - b * d]]
    return [[adj[r][s] / det for s in range(3)] for r in range(3)]


def trace_sqrt(m):
    y, z = m, [[Decimal(int(r == s)) for s in range(3)] for r in range(3)]
    for _ in range(200):
        yi, zi = inverse(y), inverse(z)
        y, z = [[(y[r][s] + zi[r][s]) / 2 for s in range(3)] for r in range(3)], \
               [[(z[r][s] + yi[r][s]) / 2 for s in range(3)] for r in range(3)]
    check = matmul(y, y)  # y^2 must give back the product
    err = max(abs(check[r][s] - m[r][s]) for r in range(3) for s in range(3))
    assert err < Decimal("1e-40"), err
    return sum(y[r][r] for r in range(3))


def main():
    for name, a, b, mu1, mu2 in CASES:
        s1 = [[Decimal(v) for v in row] for row in matmul(a, transpose(a))]
        s2 = [[Decimal(v) for v in row] for row in matmul(b, transpose(b))]
        t = trace_sqrt(matmul(s1, s2))
        dmu = sum((Decimal(x) - Decimal(y)) ** 2 for x, y in zip(mu1, mu2))
        d2 = dmu + sum(s1[r][r] + s2[r][r] for r in range(3)) - 2 * t
        print("/* %s: tools/fid_reference.py */" % name)
        print("{{%s}, {%s}, {%s}, {%s}, %s, %s}," % (
            ", ".join(str(int(v)) for row in s1 for v in row), ", ".join(str(int(v)) for row in s2 for v in row),
            ", ".join(repr(float(v)) for v in mu1), ", ".join(repr(float(v)) for v in mu2),
            "%.17g" % t, "%.17g" % d2))


if __name__ == "__main__":
    main()
