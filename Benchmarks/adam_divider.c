// Whether Adam's update (`bp_adam_update`, Sources/CKernels/Optimizers.c) could leave the divider
// and stay exact. Each element needs one IEEE square root and one IEEE division, which share the
// processor's divide unit; everything else is multiplies and adds. Built and run by
// `Benchmarks/adam_divider.sh`.
//
// 1. Checks a square root made of fused multiply-adds, `exactSqrt` below, against the divider's
//    (`_mm256_sqrt_ps`) on every float in [2^-98, 2^100): the range where its steps cannot
//    underflow or overflow (zero, subnormals, infinities and NaN would go to the divider). The
//    candidate comes from the 12-bit `rsqrt` estimate and two Newton steps; the residual
//    `r = v − y²` is then exact (one FMA), and `y` moves one unit in the last place up when
//    `r > y·ulp(y)` and down when `r ≤ −y·ulp⁻(y)` (ulp⁻: the gap below `y`, half the other at a
//    power of two). Both v and y² are multiples of ulp(y)², so these integer comparisons decide
//    the rounding of √v exactly (a square root is never halfway between two floats).
// 2. Times, on one core, best of the rounds, interleaved: the kernel as it is; without `w·decay`
//    (exact when decay is 1, as in the MLP benchmark's Adam); without the square root (not a
//    valid update: what the square root costs); with the division replaced by `rcp`
//    (not exact: what the division costs); with `exactSqrt` (exact in the range above). On 4,096
//    elements (in L1) and on 117,504, a core's half of the MLP's parameters, as the epoch runs it.
//
// Zen 1 (2026-12-05): the kernel 0.97-0.98 ns an element (about 20 cycles for 8, hot or a core's
// half of the MLP), the same without `w·decay`, 0.72-0.74 without the square root, 0.88 with `rcp`,
// 2.7 with `exactSqrt` (20 instructions on 256-bit vectors, two µops each on Zen 1). So the square
// root is at most a quarter of the update's time, and computing it exactly with FMAs costs almost
// three times the whole update: the kernel stays as it is.
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "CKernels.h"

#define TARGET __attribute__((target("avx2,fma")))
#define ALWAYS __attribute__((target("avx2,fma"), always_inline)) static inline

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/// √v correctly rounded for every v in [2^-98, 2^100), without the divide unit (see the top).
ALWAYS __m256 exactSqrt(__m256 v) {
    const __m256 estimate = _mm256_rsqrt_ps(v), half = _mm256_mul_ps(estimate, _mm256_set1_ps(0.5f));
    __m256 y = _mm256_mul_ps(v, estimate);
    __m256 r = _mm256_fnmadd_ps(y, y, v);
    y = _mm256_fmadd_ps(r, half, y);
    r = _mm256_fnmadd_ps(y, y, v);
    y = _mm256_fmadd_ps(r, half, y);
    r = _mm256_fnmadd_ps(y, y, v);  // exact: y is within an ulp of √v
    __m256i bits = _mm256_castps_si256(y);
    const __m256 power = _mm256_castsi256_ps(_mm256_and_si256(bits, _mm256_set1_epi32(0x7F800000)));
    const __m256 scaled = _mm256_mul_ps(y, power);  // y · 2^e, so y · ulp(y) = scaled · 2^-23
    const __m256 above = _mm256_mul_ps(scaled, _mm256_set1_ps(0x1p-23f));
    const __m256i atPower =
        _mm256_cmpeq_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFF)), _mm256_setzero_si256());
    const __m256 below =
        _mm256_blendv_ps(above, _mm256_mul_ps(scaled, _mm256_set1_ps(0x1p-24f)), _mm256_castsi256_ps(atPower));
    const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(r, above, _CMP_GT_OQ));
    const __m256i down = _mm256_castps_si256(_mm256_cmp_ps(r, _mm256_sub_ps(_mm256_setzero_ps(), below), _CMP_LE_OQ));
    bits = _mm256_add_epi32(_mm256_sub_epi32(bits, up), down);  // masks are −1: one ulp up or down
    return _mm256_castsi256_ps(bits);
}

ALWAYS __m256 divide(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
ALWAYS __m256 approximateDivide(__m256 a, __m256 b) { return _mm256_mul_ps(a, _mm256_rcp_ps(b)); }
ALWAYS __m256 noSqrt(__m256 v) { return v; }
ALWAYS __m256 keepW(__m256 w, __m256 decay) { return (void)decay, w; }  // w · 1 = w: exact when decay is 1

// The loop of `adamAVX2` with the square root and the division as parameters.
#define ADAM(name, SQRT, DIVIDE, DECAY)                                                                            \
    static TARGET void name(float *w, float *m, float *v, const float *g, long count, const BPAdamStep *s) { \
        const __m256 b1 = _mm256_set1_ps(s->beta1), b2 = _mm256_set1_ps(s->beta2);                         \
        const __m256 c1 = _mm256_set1_ps(s->oneMinusBeta1), c2 = _mm256_set1_ps(s->oneMinusBeta2);         \
        const __m256 decay = _mm256_set1_ps(s->decay), size = _mm256_set1_ps(s->stepSize);                 \
        const __m256 correction = _mm256_set1_ps(s->inverseCorrection2), eps = _mm256_set1_ps(s->epsilon); \
        for (long i = 0; i + 8 <= count; i += 8) {                                                         \
            const __m256 gi = _mm256_loadu_ps(g + i);                                                      \
            const __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, gi)); \
            const __m256 vi = _mm256_add_ps(                                                               \
                _mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(c2, _mm256_mul_ps(gi, gi)));      \
            const __m256 denominator = _mm256_add_ps(_mm256_mul_ps(SQRT(vi), correction), eps);            \
            const __m256 wi = _mm256_sub_ps(                                                               \
                DECAY(_mm256_loadu_ps(w + i), decay), _mm256_mul_ps(size, DIVIDE(mi, denominator)));           \
            _mm256_storeu_ps(m + i, mi);                                                                   \
            _mm256_storeu_ps(v + i, vi);                                                                   \
            _mm256_storeu_ps(w + i, wi);                                                                   \
        }                                                                                                  \
    }

ADAM(withoutDecay, _mm256_sqrt_ps, divide, keepW)
ADAM(withoutSqrt, noSqrt, divide, _mm256_mul_ps)
ADAM(approximateDivision, _mm256_sqrt_ps, approximateDivide, _mm256_mul_ps)
ADAM(fmaSqrt, exactSqrt, divide, _mm256_mul_ps)

static void asIs(float *w, float *m, float *v, const float *g, long count, const BPAdamStep *s) {
    bp_adam_update(w, m, v, g, count, s);
}

typedef void (*Update)(float *, float *, float *, const float *, long, const BPAdamStep *);

/// Every float in [2^-98, 2^100) through `exactSqrt` and `_mm256_sqrt_ps`; returns how many differ.
static TARGET long checkSqrt(long *checked) {
    float low = 0x1p-98f, high = 0x1p100f;
    uint32_t first, end;
    memcpy(&first, &low, 4);
    memcpy(&end, &high, 4);
    long differing = 0;
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (uint32_t bits = first; bits < end; bits += 8) {
        const __m256 v = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_set1_epi32((int)bits), lanes));
        const __m256i same = _mm256_cmpeq_epi32(
            _mm256_castps_si256(exactSqrt(v)), _mm256_castps_si256(_mm256_sqrt_ps(v)));
        differing += 8 - __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(same)));
    }
    *checked = (long)(end - first);
    return differing;
}

int main(void) {
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
        fprintf(stderr, "adam_divider: this processor has no AVX2 and FMA\n");
        return 1;
    }
    long checked = 0;
    const long differing = checkSqrt(&checked);
    printf("exactSqrt against the divider's square root: %ld floats in [2^-98, 2^100), %ld differ\n", checked,
        differing);

    const Update updates[] = {asIs, withoutDecay, withoutSqrt, approximateDivision, fmaSqrt};
    const char *names[] = {"bp_adam_update (as is)", "without w·decay (decay 1)", "without the square root", "division by rcp (inexact)",
        "exactSqrt, IEEE division"};
    const long sizes[] = {4096, 117504};
    const BPAdamStep step = {0.9f, 0.999f, 0.1f, 0.001f, 1.0f, 1e-3f, 1.0f, 1e-8f};
    for (int s = 0; s < 2; s++) {
        const long count = sizes[s];
        float *w = aligned_alloc(64, (size_t)count * 4), *m = aligned_alloc(64, (size_t)count * 4);
        float *v = aligned_alloc(64, (size_t)count * 4), *g = aligned_alloc(64, (size_t)count * 4);
        if (!w || !m || !v || !g) {
            fprintf(stderr, "adam_divider: could not allocate %ld elements\n", count);
            return 1;
        }
        for (long i = 0; i < count; i++) {
            w[i] = 0.01f * (float)(i % 100);
            m[i] = 0;
            v[i] = 0.1f;
            g[i] = 1e-3f * (float)((i * 7) % 13 - 6);
        }
        const int calls = (int)(20000000 / count);
        double best[5] = {1e30, 1e30, 1e30, 1e30, 1e30};
        for (int round = 0; round < 7; round++) {
            for (int u = 0; u < 5; u++) {
                const double start = now();
                for (int call = 0; call < calls; call++) updates[u](w, m, v, g, count, &step);
                const double seconds = (now() - start) / calls;
                if (seconds < best[u]) best[u] = seconds;
            }
        }
        printf("%ld elements, one core, best of 7 interleaved rounds:\n", count);
        for (int u = 0; u < 5; u++) printf("  %-28s %6.3f ns an element\n", names[u], best[u] * 1e9 / count);
        free(w), free(m), free(v), free(g);
    }
    return differing == 0 ? 0 : 1;
}
