// The optimizers' updates over a stretch of one parameter (Optimizers.swift calls them for each
// piece of a parameter): one pass that reads `w`, `g` and the state once and writes them once.
//
// Each computes exactly what the scalar loop of its doc comment computes, element by element, on
// every CPU: every operation is rounded as written, never a multiply and an add fused, and the
// square root and the division are IEEE's (correctly rounded in every lane). The AVX2 versions only
// do eight elements at once, so a value's result does not depend on where its stretch starts. The
// tests compare them with Swift loops written from the formulas, bit for bit.
//
// Adam waits for the divide unit, which its square root and division share. A square root of FMAs
// that rounds exactly was measured instead (`Benchmarks/adam_divider.sh`): on Zen 1 it made the
// update 2.8 times slower, and without any square root it would be only a quarter faster.

#pragma STDC FP_CONTRACT OFF

#include <math.h>

#include "CKernels.h"

/// Elements [begin, count) one at a time: the formulas of `bp_adam_update`, in order.
static inline void adamScalar(float *w, float *m, float *v, const float *g, long begin, long count,
    const BPAdamStep *step) {
    for (long i = begin; i < count; i++) {
        const float gi = g[i];
        m[i] = step->beta1 * m[i] + step->oneMinusBeta1 * gi;
        v[i] = step->beta2 * v[i] + step->oneMinusBeta2 * (gi * gi);
        w[i] = w[i] * step->decay - step->stepSize * (m[i] / (sqrtf(v[i]) * step->inverseCorrection2 + step->epsilon));
    }
}

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

static TARGET void adamAVX2(float *w, float *m, float *v, const float *g, long count, const BPAdamStep *step) {
    const __m256 b1 = _mm256_set1_ps(step->beta1), b2 = _mm256_set1_ps(step->beta2);
    const __m256 c1 = _mm256_set1_ps(step->oneMinusBeta1), c2 = _mm256_set1_ps(step->oneMinusBeta2);
    const __m256 decay = _mm256_set1_ps(step->decay), size = _mm256_set1_ps(step->stepSize);
    const __m256 correction = _mm256_set1_ps(step->inverseCorrection2), eps = _mm256_set1_ps(step->epsilon);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256 gi = _mm256_loadu_ps(g + i);
        const __m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, gi));
        const __m256 vi =
            _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(c2, _mm256_mul_ps(gi, gi)));
        const __m256 denominator = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), correction), eps);
        const __m256 wi = _mm256_sub_ps(
            _mm256_mul_ps(_mm256_loadu_ps(w + i), decay), _mm256_mul_ps(size, _mm256_div_ps(mi, denominator)));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(w + i, wi);
    }
    adamScalar(w, m, v, g, i, count, step);
}

/// `adamAVX2` with 16 lanes (the same operations, so the same bits), where the processor has
/// AVX-512: the update is bound by its square roots and divisions, which run 16 lanes at a time
/// on Zen 5.
static __attribute__((target("avx512f,avx2,fma"))) void adamAVX512(float *w, float *m, float *v, const float *g,
    long count, const BPAdamStep *step) {
    const __m512 b1 = _mm512_set1_ps(step->beta1), b2 = _mm512_set1_ps(step->beta2);
    const __m512 c1 = _mm512_set1_ps(step->oneMinusBeta1), c2 = _mm512_set1_ps(step->oneMinusBeta2);
    const __m512 decay = _mm512_set1_ps(step->decay), size = _mm512_set1_ps(step->stepSize);
    const __m512 correction = _mm512_set1_ps(step->inverseCorrection2), eps = _mm512_set1_ps(step->epsilon);
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        const __m512 gi = _mm512_loadu_ps(g + i);
        const __m512 mi = _mm512_add_ps(_mm512_mul_ps(b1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(c1, gi));
        const __m512 vi =
            _mm512_add_ps(_mm512_mul_ps(b2, _mm512_loadu_ps(v + i)), _mm512_mul_ps(c2, _mm512_mul_ps(gi, gi)));
        const __m512 denominator = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), correction), eps);
        const __m512 wi = _mm512_sub_ps(
            _mm512_mul_ps(_mm512_loadu_ps(w + i), decay), _mm512_mul_ps(size, _mm512_div_ps(mi, denominator)));
        _mm512_storeu_ps(m + i, mi);
        _mm512_storeu_ps(v + i, vi);
        _mm512_storeu_ps(w + i, wi);
    }
    adamScalar(w, m, v, g, i, count, step);
}

#define HAS_AVX2 bp_gemm_avx2_available()
#define HAS_AVX512 bp_kernels_use_avx512()
#else
#define HAS_AVX2 0
#define HAS_AVX512 0
#endif

void bp_adam_update(float *w, float *m, float *v, const float *g, long count, const BPAdamStep *step) {
#if defined(__x86_64__) || defined(_M_X64)
    if (HAS_AVX512) {
        adamAVX512(w, m, v, g, count, step);
        return;
    }
    if (HAS_AVX2) {
        adamAVX2(w, m, v, g, count, step);
        return;
    }
#endif
    adamScalar(w, m, v, g, 0, count, step);
}
