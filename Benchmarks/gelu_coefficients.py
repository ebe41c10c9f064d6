"""The coefficients GELU_Q in Sources/CKernels/Activations.c, from mpmath (50 digits).

GELU's kernel writes erfc(a) = t · Q(s) · e^(-a²) for a ≥ 0, with t = 3/(3 + a) and
s = 2t - 1 = (3 - a)/(3 + a) in [-1, 1]; Q(s) = erfc(a)·e^(a²)/t is smooth on all of [-1, 1]
(a = ∞ at s = -1). Its Chebyshev interpolant of degree 23 on 80 Chebyshev nodes, rewritten in
powers of s, is printed as the C array, then the largest relative error of that polynomial, with
its coefficients rounded to Double, on 4001 points of [-1, 1] (about 2.4e-16).

    python3 Benchmarks/gelu_coefficients.py     (needs mpmath: pip install mpmath)
"""

import mpmath as mp

mp.mp.dps = 50
SCALE, NODES, DEGREE = 3, 80, 23


def q(s):
    t = (s + 1) / 2
    if t == 0:  # the limit a → ∞: erfc(a)·e^(a²) ~ 1/(a√π), and 1/t = (3 + a)/3
        return 1 / (SCALE * mp.sqrt(mp.pi))
    a = SCALE * (1 - t) / t
    return mp.erfc(a) * mp.exp(a * a) / t


nodes = [mp.cos(mp.pi * (k + mp.mpf(1) / 2) / NODES) for k in range(NODES)]
values = [q(s) for s in nodes]
chebyshev = [
    2 * mp.fsum(values[k] * mp.cos(mp.pi * j * (k + mp.mpf(1) / 2) / NODES) for k in range(NODES)) / NODES
    for j in range(DEGREE + 1)
]
chebyshev[0] /= 2

# T_j in powers of s: T_0 = 1, T_1 = s, T_{j+1} = 2s·T_j - T_{j-1}.
polynomials = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]
for j in range(2, DEGREE + 1):
    following = [mp.mpf(0)] + [2 * c for c in polynomials[-1]]
    for i, c in enumerate(polynomials[-2]):
        following[i] -= c
    polynomials.append(following)
power = [mp.mpf(0)] * (DEGREE + 1)
for j in range(DEGREE + 1):
    for i, c in enumerate(polynomials[j]):
        power[i] += chebyshev[j] * c

print("static const double GELU_Q[%d] = {" % (DEGREE + 1))
for i in range(0, DEGREE + 1, 3):
    print("    " + ", ".join("%.17g" % float(c) for c in power[i : i + 3]) + ",")
print("};")

rounded = [mp.mpf(float(c)) for c in power]
worst = mp.mpf(0)
for k in range(4001):
    s = mp.mpf(-1) + 2 * mp.mpf(k) / 4000
    value = mp.mpf(0)
    for c in reversed(rounded):
        value = value * s + c
    worst = max(worst, abs(value / q(s) - 1))
print("largest relative error on [-1, 1]: %.2g" % float(worst))
