// The activation kernels (`bp_activation`, Sources/CKernels/Activations.c) against the C library:
// accuracy in Float ulps against the C library's Double formula rounded once, on 2 million inputs
// from -120 to 120 and from the subnormals to 1 (GELU's against its formula in long double); the
// bits of each instruction set's path against the scalar path; and the time per element of a
// batch's activations (128 × 256, in L2) against the C library's float functions one at a time
// (`1 / (1 + expf(-x))`, stable, `tanhf`, and for GELU PyTorch's `x · ½ (1 + erff(x/√2))`).
// Run by Benchmarks/activations.sh.

#include "CKernels.h"

#include <fenv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/// The distance in units in the last place between two Floats (0 for two NaNs).
static long ulps(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : 1L << 40;
    int x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    const long ordered = x < 0 ? -(long)(x & 0x7FFFFFFF) : (long)x, other = y < 0 ? -(long)(y & 0x7FFFFFFF) : (long)y;
    return labs(ordered - other);
}

static double sigmoidDouble(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

/// gelu(x) in long double, rounded once: x/2 + x·erf(x/√2)/2 for |x| < 1, where the second term is
/// positive and for tiny x far below an ulp of the first, so the sum is rounded upward: it keeps the
/// side of x/2 the true value lies on (for a subnormal x with an odd last bit, x/2 is halfway between
/// two Floats); x·erfc(-x/√2)/2 elsewhere.
static float geluReference(float input) {
    const long double x = input;
    if (fabsl(x) >= 1) return (float)(0.5L * x * erfcl(-x * sqrtl(0.5L)));
    const long double half = 0.5L * x, rest = 0.5L * x * erfl(x * sqrtl(0.5L));
    fesetround(FE_UPWARD);
    volatile long double sum = half + rest;
    fesetround(FE_TONEAREST);
    return (float)sum;
}

/// The C library's Double formula, rounded once (GELU's in long double: erfc(-x/√2) in Double
/// carries the rounding of its argument, up to 2·10⁻¹⁴ relative, into the tail).
static float reference(int kind, float input, float gradient) {
    const double x = input, s = sigmoidDouble(x);
    const long double lx = input, cdf = 0.5L * erfcl(-lx * sqrtl(0.5L));
    switch (kind) {
    case BP_ACTIVATION_GELU: return geluReference(input);
    case BP_ACTIVATION_GELU_BACKWARD:
        return (float)((long double)gradient * (cdf + lx * expl(-0.5L * lx * lx) / sqrtl(2.0L * acosl(-1.0L))));
    case BP_ACTIVATION_SIGMOID: return (float)s;
    case BP_ACTIVATION_SILU: return (float)(x * s);
    case BP_ACTIVATION_SILU_BACKWARD: return (float)((double)gradient * s * (1 + x * (1 - s)));
    default: return (float)tanh(x);
    }
}

/// The C library's float functions, one element at a time: what a plain loop does.
static float library(int kind, float x, float g) {
    const float e = expf(-fabsf(x)), s = (x >= 0 ? 1 : e) / (1 + e);
    const float rootHalf = 0.70710678f, inverseRoot2Pi = 0.39894228f;
    switch (kind) {
    case BP_ACTIVATION_GELU: return x * 0.5f * (1 + erff(x * rootHalf));
    case BP_ACTIVATION_GELU_BACKWARD:
        return g * (0.5f * (1 + erff(x * rootHalf)) + x * expf(-0.5f * x * x) * inverseRoot2Pi);
    case BP_ACTIVATION_SIGMOID: return s;
    case BP_ACTIVATION_SILU: return x * s;
    case BP_ACTIVATION_SILU_BACKWARD: return g * s * (1 + x * (1 - s));
    default: return tanhf(x);
    }
}

int main(void) {
    const char *names[6] = {"sigmoid", "silu", "silu backward", "tanh", "gelu", "gelu backward"};
    const long n = 2000000;
    float *x = malloc((size_t)n * sizeof(float)), *g = malloc((size_t)n * sizeof(float));
    float *out = malloc((size_t)n * sizeof(float)), *other = malloc((size_t)n * sizeof(float));
    if (!x || !g || !out || !other) return 1;
    srand(1);
    for (long i = 0; i < n; i++) {
        const double u = rand() / (double)RAND_MAX;
        x[i] = (float)(i % 2 ? u * 240 - 120 : (i % 4 ? 1 : -1) * pow(2.0, -140 * u));
        g[i] = (float)(rand() / (double)RAND_MAX * 4 - 2);
    }
    printf("accuracy on %ld inputs, against the C library's Double formula rounded once:\n", n);
    for (int kind = 0; kind < 6; kind++) {
        long worst = 0, differing = 0, libraryWorst = 0, libraryDiffering = 0, pathsDiffer = 0;
        bp_activation(kind, x, g, out, n, 0);
        bp_kernels_allow_avx512(0);
        bp_activation(kind, x, g, other, n, 1);
        pathsDiffer += memcmp(out, other, (size_t)n * sizeof(float)) != 0;
        bp_kernels_allow_avx512(1);
        bp_activation(kind, x, g, other, n, 1);
        pathsDiffer += memcmp(out, other, (size_t)n * sizeof(float)) != 0;
        for (long i = 0; i < n; i++) {
            const float expected = reference(kind, x[i], g[i]);
            // The backwards near the zero of their derivative (SiLU's 1 + x(1 - s), GELU's Φ(x) + xφ(x)):
            // no ulp bound (an absolute error).
            const int backward = kind == BP_ACTIVATION_SILU_BACKWARD || kind == BP_ACTIVATION_GELU_BACKWARD;
            if (backward && fabsf(expected) < 1e-6f * fabsf(g[i])) continue;
            const long d = ulps(out[i], expected), l = ulps(library(kind, x[i], g[i]), expected);
            worst = d > worst ? d : worst;
            differing += d != 0;
            libraryWorst = l > libraryWorst ? l : libraryWorst;
            libraryDiffering += l != 0;
        }
        printf("  %-14s kernel: at most %ld ulp, %.4f%% differ; C library in Float: at most %ld ulp, %.2f%% differ; "
               "paths differing from the scalar one: %ld\n",
            names[kind], worst, 100.0 * (double)differing / (double)n, libraryWorst,
            100.0 * (double)libraryDiffering / (double)n, pathsDiffer);
    }
    const long batch = 128 * 256;
    printf("time per element of %ld elements (128 x 256), best of 400 runs, one core:\n", batch);
    for (int kind = 0; kind < 6; kind++) {
        double best[3] = {1, 1, 1};
        for (int run = 0; run < 400; run++) {
            for (int way = 0; way < 3; way++) {
                const double start = now();
                if (way < 2) {
                    bp_kernels_allow_avx512(way == 0);
                    bp_activation(kind, x, g, out, batch, 1);
                } else {
                    for (long i = 0; i < batch; i++) other[i] = library(kind, x[i], g[i]);
                }
                const double t = now() - start;
                best[way] = t < best[way] ? t : best[way];
            }
        }
        bp_kernels_allow_avx512(1);
        printf("  %-14s widest path %.2f ns, AVX2 %.2f ns; C library in Float %.2f ns (%.1fx)\n", names[kind],
            1e9 * best[0] / batch, 1e9 * best[1] / batch, 1e9 * best[2] / batch, best[2] / best[0]);
    }
    free(x), free(g), free(out), free(other);
    return 0;
}
