// The exponentials of a softmax's rows, in Double, several at a time (`bp_softmax_rows`).
//
// Cross-entropy needs `exp(x_j - m)` for every logit of a minibatch: 640 of them for 64 rows of
// 10 classes. glibc's scalar `exp` takes about 5 ns each, and the loss of a minibatch step spent
// more time in it than in anything but the matrix products; vectors of 8 (AVX-512) or 4 (AVX2)
// lanes do the same work in a tenth of that.
//
// Each exponential is computed by the same operations in every path (scalar, AVX2, AVX-512), each
// rounded as written, so that the bits do not depend on the processor or on where a row starts:
//
//   t  = x - m                        exact in Double, at most 0 (or NaN, or -inf)
//   tc = t < -746 ? -746 : t          below -746, exp(t) rounds to 0 (set at the end)
//   k  = rint(tc / ln 2)              fma(tc, log₂e, 1.5·2⁵²) - 1.5·2⁵², a whole number in [-1076, 0]
//   r  = tc - k·ln 2                  two fused steps, ln 2 = LN2_HI + LN2_LO; |r| ≤ 0.347
//   p  = Σ_{n=0}^{13} rⁿ / n!         Horner, fused; the first term left out is 4·10⁻¹⁸ relative
//   exp(t) = (p · 2^k₁) · 2^k₂        k₁ = ⌊k/2⌋, k₂ = k - k₁: both factors normal, one rounding
//                                     when the result is subnormal
//
// The result is within one unit in the last place of the correctly rounded exp (compared with the C
// library's on 200,000 values in the tests, 1.1 million in Benchmarks/softmax_exp.sh), far below what
// a Float loss or gradient can show.

#pragma STDC FP_CONTRACT OFF

#include "CKernels.h"
#include "ExpReduction.h"

#include <math.h>
#include <string.h>

static const double LOWEST = -746.0;

/// 1/n! for n = 13 down to 0: the Taylor polynomial of exp, in Horner's order.
static const double TAYLOR[14] = {
    1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0,
    1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0};

/// exp(t) for t ≤ 0 by the steps above, one value at a time (the reference for the vector paths,
/// and the path of processors without AVX2).
static inline double expScalar(double t) {
    const double tc = t < LOWEST ? LOWEST : t;
    const double k = fma(tc, LOG2E, SHIFTER) - SHIFTER;
    double r = fma(-k, LN2_HI, tc);
    r = fma(-k, LN2_LO, r);
    double p = TAYLOR[0];
    for (int n = 1; n < 14; n++) p = fma(p, r, TAYLOR[n]);
    const double k1 = floor(k * 0.5), k2 = k - k1;
    const double result = (p * powerOfTwo(k1)) * powerOfTwo(k2);
    return t < LOWEST ? 0.0 : result;
}

static void expArrayScalar(double *t, long count) {
    for (long i = 0; i < count; i++) t[i] = expScalar(t[i]);
}

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#define TARGET2 __attribute__((target("avx2,fma")))
#define TARGET512 __attribute__((target("avx512f,avx2,fma")))

/// `powerOfTwo` on four lanes.
static inline TARGET2 __m256d powerOfTwo4(__m256d k) {
    const __m256i bits = _mm256_castpd_si256(_mm256_add_pd(k, _mm256_set1_pd(SHIFTER)));
    const __m256i base = _mm256_castpd_si256(_mm256_set1_pd(SHIFTER));
    const __m256i exponent = _mm256_add_epi64(_mm256_sub_epi64(bits, base), _mm256_set1_epi64x(1023));
    return _mm256_castsi256_pd(_mm256_slli_epi64(exponent, 52));
}

/// `expScalar` on four lanes.
static inline TARGET2 __m256d exp4(__m256d t) {
    const __m256d lowest = _mm256_set1_pd(LOWEST);
    const __m256d below = _mm256_cmp_pd(t, lowest, _CMP_LT_OQ);
    const __m256d tc = _mm256_blendv_pd(t, lowest, below);
    const __m256d shifter = _mm256_set1_pd(SHIFTER);
    const __m256d k = _mm256_sub_pd(_mm256_fmadd_pd(tc, _mm256_set1_pd(LOG2E), shifter), shifter);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_HI), tc);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_LO), r);
    __m256d p = _mm256_set1_pd(TAYLOR[0]);
    for (int n = 1; n < 14; n++) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(TAYLOR[n]));
    const __m256d k1 = _mm256_floor_pd(_mm256_mul_pd(k, _mm256_set1_pd(0.5))), k2 = _mm256_sub_pd(k, k1);
    const __m256d result = _mm256_mul_pd(_mm256_mul_pd(p, powerOfTwo4(k1)), powerOfTwo4(k2));
    return _mm256_blendv_pd(result, _mm256_setzero_pd(), below);
}

static TARGET2 void expArrayAVX2(double *t, long count) {
    long i = 0;
    for (; i + 4 <= count; i += 4) _mm256_storeu_pd(t + i, exp4(_mm256_loadu_pd(t + i)));
    if (i < count) {
        const long rest = count - i;
        const __m256i mask = _mm256_setr_epi64x(-1, rest > 1 ? -1 : 0, rest > 2 ? -1 : 0, 0);
        _mm256_maskstore_pd(t + i, mask, exp4(_mm256_maskload_pd(t + i, mask)));
    }
}

/// `powerOfTwo` on eight lanes.
static inline TARGET512 __m512d powerOfTwo8(__m512d k) {
    const __m512i bits = _mm512_castpd_si512(_mm512_add_pd(k, _mm512_set1_pd(SHIFTER)));
    const __m512i base = _mm512_castpd_si512(_mm512_set1_pd(SHIFTER));
    const __m512i exponent = _mm512_add_epi64(_mm512_sub_epi64(bits, base), _mm512_set1_epi64(1023));
    return _mm512_castsi512_pd(_mm512_slli_epi64(exponent, 52));
}

/// `expScalar` on eight lanes.
static inline TARGET512 __m512d exp8(__m512d t) {
    const __m512d lowest = _mm512_set1_pd(LOWEST);
    const __mmask8 below = _mm512_cmp_pd_mask(t, lowest, _CMP_LT_OQ);
    const __m512d tc = _mm512_mask_blend_pd(below, t, lowest);
    const __m512d shifter = _mm512_set1_pd(SHIFTER);
    const __m512d k = _mm512_sub_pd(_mm512_fmadd_pd(tc, _mm512_set1_pd(LOG2E), shifter), shifter);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LN2_HI), tc);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LN2_LO), r);
    __m512d p = _mm512_set1_pd(TAYLOR[0]);
    for (int n = 1; n < 14; n++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(TAYLOR[n]));
    const __m512d k1 = _mm512_roundscale_pd(_mm512_mul_pd(k, _mm512_set1_pd(0.5)), _MM_FROUND_TO_NEG_INF);
    const __m512d k2 = _mm512_sub_pd(k, k1);
    const __m512d result = _mm512_mul_pd(_mm512_mul_pd(p, powerOfTwo8(k1)), powerOfTwo8(k2));
    return _mm512_mask_blend_pd(below, result, _mm512_setzero_pd());
}

static TARGET512 void expArrayAVX512(double *t, long count) {
    for (long i = 0; i < count; i += 8) {
        const __mmask8 lanes = count - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (count - i)) - 1);
        _mm512_mask_storeu_pd(t + i, lanes, exp8(_mm512_maskz_loadu_pd(lanes, t + i)));
    }
}

#endif

void bp_softmax_rows(const float *x, long rows, long classes, float *maxima, double *sums, double *exponentials) {
    // Each row's maximum (a NaN is passed over, as Swift's `max` does), and its exponents
    // `x - m` in Double; a row whose maximum is not finite gets NaN throughout.
    for (long row = 0; row < rows; row++) {
        const float *values = x + row * classes;
        double *t = exponentials + row * classes;
        float m = -INFINITY;
        for (long j = 0; j < classes; j++) m = values[j] >= m ? values[j] : m;
        maxima[row] = m;
        const int finite = isfinite(m);
        for (long j = 0; j < classes; j++) t[j] = finite ? (double)values[j] - (double)m : NAN;
    }
    const long count = rows * classes;
#if defined(__x86_64__) || defined(_M_X64)
    if (bp_kernels_use_avx512()) {
        expArrayAVX512(exponentials, count);
    } else if (bp_gemm_avx2_available()) {
        expArrayAVX2(exponentials, count);
    } else {
        expArrayScalar(exponentials, count);
    }
#else
    expArrayScalar(exponentials, count);
#endif
    // Each row's sum, in index order.
    for (long row = 0; row < rows; row++) {
        const double *e = exponentials + row * classes;
        double total = 0;
        for (long j = 0; j < classes; j++) total += e[j];
        sums[row] = total;
    }
}

double bp_exp_nonpositive(double t) { return expScalar(t); }
