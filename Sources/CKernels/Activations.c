// The activations that rest on exp, several elements at a time (`bp_activation`): Sigmoid, SiLU
// (forward and backward), Tanh and GELU (forward and backward).
//
// The C library's `expf` and `tanhf` take 7-30 ns an element, one at a time: in an MLP with a SiLU
// after a Lin of 256, SiLU's forward and backward took a sixth of the epoch. Here each element is
// widened to Double, goes through the exponential below, the formula below in Double, and is
// rounded to Float once at the end: so the result is the correctly rounded Float value but for the
// rare element whose true value lies within about 10⁻¹⁴ (relative) of a halfway point between two
// Floats, where it may be one ulp off. Four (AVX2) or eight (AVX-512) elements at a time; the
// scalar path does the same operations, each rounded as written, so every path gives the same bits,
// wherever a vector starts.
//
// The exponential, for t ≤ 0 (Softmax.c's steps, with a shorter polynomial evaluated in a shorter
// chain, since one rounding to Float follows):
//
//   tc = t < -200 ? -200 : t          below -200, exp(t) < 1.4·10⁻⁸⁷ is taken as 0 (set at the end):
//                                     every result it enters rounds to 0 in Float, and -inf · 0 is
//                                     NaN (silu(-inf), as PyTorch's)
//   k  = rint(tc / ln 2)              fma(tc, log₂e, 1.5·2⁵²) - 1.5·2⁵², a whole number in [-289, 0]
//   r  = tc - k·ln 2                  two fused steps, ln 2 = LN2_HI + LN2_LO; |r| ≤ 0.347
//   p  = Σ_{n=0}^{11} rⁿ / n!         Estrin's scheme, fused: pairs, then fours, then the whole (the
//                                     chain of dependent steps is 5 long where Horner's is 11); the
//                                     first term left out is 7·10⁻¹⁵ relative
//   exp(t) = p · 2^k                  2^k normal: one exact scaling (0 below -200)
//
// With e = exp(-|x|) (its argument at most 0, so the exponential never overflows):
//
//   sigmoid(x)    = (x ≥ 0 ? 1 : e) / (1 + e)                  1/(1 + e^-x), or e^x/(1 + e^x)
//   silu(x)       = x · sigmoid(x)
//   silu'(x) · g  = (g · s) · (1 + x · (1 - s)),  s = sigmoid(x)
//   tanh(x)       = ±(1 - e₂) / (1 + e₂), e₂ = exp(-2|x|), the sign of x;  x itself for |x| < 2⁻²⁰
//
// GELU rests on the normal distribution function Φ(x) = ½ erfc(-x/√2), taken from its tail so that
// nothing cancels (`1 + erf(x/√2)`, PyTorch's formula, is 0 in Float below x ≈ -5.5 and loses
// digits in Double below -6). With a = min(|x|/√2, 30), s = (3 - a)/(3 + a) in [-1, 1] and
// t = (s + 1)/2 = 3/(3 + a):
//
//   erfc(a)       = t · Q(s) · e^(-a²),  e^(-a²) = exp(-x²/2) (x² exact in Double, x being a Float)
//   h             = ½ erfc(a) = Φ(-|x|);  Φ(x) = h for x < 0, 1 - h otherwise
//   gelu(x)       = x · Φ(x);  x · (½ ± 2⁻⁴¹) = x/2 + 2⁻⁴¹|x| for |x| < 2⁻⁴⁰ (below)
//   gelu'(x) · g  = g · (Φ(x) + x · exp(-x²/2) / √(2π))
//
// Q(s) = erfc(a)·e^(a²)/t is smooth on all of [-1, 1] (a from 0 to ∞; 1 at s = 1, 1/(3√π) at
// s = -1): GELU_Q holds the power form of its Chebyshev interpolant of degree 23, within
// 2.5·10⁻¹⁶ relative (Benchmarks/gelu_coefficients.py computes them with mpmath). Past |x| = 20,
// exp(-x²/2) < 10⁻⁸⁶ is 0 (the exponential's floor), so the clamp of a at 30 only keeps s finite
// for ±inf. gelu(-inf) and GELU's gradient at ±inf are NaN (∞ · 0), as PyTorch's; gelu(+inf) = inf.
//
// NOTE: gelu's tiny inputs: gelu(x) = x/2 + x²/√(2π) + O(x⁴), and where the second term is below a
// Double ulp of the first, x · Φ(x) is x/2 exactly in Double; for a subnormal x with an odd last bit
// that is a halfway case in Float, rounded to even rather than up as the true value is. Below
// |x| = 2⁻⁴⁰, x · (½ ± 2⁻⁴¹) (the sign of x; x/2 + 2⁻⁴¹|x| within Double's rounding, and ±0 kept)
// lies on the same side of every Float as x/2 + x²/√(2π).
//
// NOTE: tanh's small inputs: `1 - e₂` cancels, leaving an error of about 10⁻¹⁶ / 2|x| relative
// (below 10⁻¹⁰ from |x| = 2⁻²⁰ up), and below 2⁻²⁰ the Float nearest tanh(x) = x - x³/3 + … is x.
// NaN gives NaN; ±inf the limits, but for silu(-inf) and SiLU's gradient at ±inf: NaN (∞ · 0), as PyTorch's.

#pragma STDC FP_CONTRACT OFF

#include "CKernels.h"
#include "ExpReduction.h"

#include <math.h>
#include <string.h>

static const double LOWEST = -200.0;

/// 1/n! for n = 0 to 11: the Taylor polynomial of exp.
static const double TAYLOR[12] = {1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0,
    1.0 / 40320.0, 1.0 / 362880.0, 1.0 / 3628800.0, 1.0 / 39916800.0};

/// exp(t) for t ≤ 0 by the steps above, one value at a time.
static inline double expScalar(double t) {
    const double tc = t < LOWEST ? LOWEST : t;
    const double k = fma(tc, LOG2E, SHIFTER) - SHIFTER;
    double r = fma(-k, LN2_HI, tc);
    r = fma(-k, LN2_LO, r);
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double pairs[6];
    for (int n = 0; n < 6; n++) pairs[n] = fma(TAYLOR[2 * n + 1], r, TAYLOR[2 * n]);
    const double low = fma(pairs[1], r2, pairs[0]), middle = fma(pairs[3], r2, pairs[2]);
    const double high = fma(pairs[5], r2, pairs[4]);
    const double result = fma(high, r8, fma(middle, r4, low)) * powerOfTwo(k);
    return t < LOWEST ? 0.0 : result;
}

/// The power form of Q(s) = erfc(a)·e^(a²)/t, s = (3 - a)/(3 + a), t = (s + 1)/2 (see above): Q(s) = Σ GELU_Q[n]·sⁿ.
static const double GELU_Q[24] = {
    0.35800230236277991, 0.29446481772329447, 0.19674278570136933,
    0.1034890873001944, 0.039842587095666314, 0.0089424115413504722,
    -0.00040413887394316183, -0.001011353998686046, -0.00018276991424949872,
    9.2259271340713663e-05, 3.5853923636812829e-05, -1.0132683861908937e-05,
    -5.8238574076360061e-06, 1.5830094253678585e-06, 9.2258296402014064e-07,
    -3.3293900476369915e-07, -1.3722842699705352e-07, 7.7951226697135082e-08,
    1.6652640553590825e-08, -1.7060807323373566e-08, -1.1893885619092368e-09,
    2.8979247563452761e-09, 2.3183140775046786e-12, -2.7035624320633309e-10,
};
static const double INVERSE_ROOT2 = 0.70710678118654752440;
static const double INVERSE_ROOT_2PI = 0.39894228040143267794;
/// The clamp of a = |x|/√2: past it exp(-x²/2) is 0 anyway.
static const double GELU_A_MAX = 30.0;
/// Below this |x|, gelu(x) is taken as x/2 + |x|·GELU_TINY_STEP (see the NOTE above).
static const double GELU_TINY = 0x1p-40, GELU_TINY_STEP = 0x1p-41;

/// Q(s) by Estrin's scheme (pairs, fours, eights, then the whole: 6 dependent steps).
static inline double geluQScalar(double s) {
    const double s2 = s * s, s4 = s2 * s2, s8 = s4 * s4, s16 = s8 * s8;
    double pairs[12], fours[6], eights[3];
    for (int n = 0; n < 12; n++) pairs[n] = fma(GELU_Q[2 * n + 1], s, GELU_Q[2 * n]);
    for (int n = 0; n < 6; n++) fours[n] = fma(pairs[2 * n + 1], s2, pairs[2 * n]);
    for (int n = 0; n < 3; n++) eights[n] = fma(fours[2 * n + 1], s4, fours[2 * n]);
    return fma(eights[2], s16, fma(eights[1], s8, eights[0]));
}

/// GELU (`backward` 0) or its input gradient from `g` (1) of one element, by the steps above.
static inline float geluScalar(int backward, double x, double g) {
    double a = fabs(x) * INVERSE_ROOT2;
    a = a < GELU_A_MAX ? a : GELU_A_MAX;  // NaN gives the clamp, as the vectors' min does
    const double s = (3.0 - a) / (3.0 + a);
    const double e = expScalar(-0.5 * x * x);
    const double h = 0.5 * (0.5 * (s + 1.0)) * geluQScalar(s) * e;  // Φ(-|x|)
    const double cdf = x < 0 ? h : 1.0 - h;
    if (backward) return (float)(g * (cdf + x * e * INVERSE_ROOT_2PI));
    return (float)(fabs(x) < GELU_TINY ? x * (x < 0 ? 0.5 - GELU_TINY_STEP : 0.5 + GELU_TINY_STEP) : x * cdf);
}

/// Below this |x|, tanh(x) rounds to x in Float (see the NOTE above).
static const double TANH_IDENTITY_BELOW = 0x1p-20;

/// One element on the scalar path: the reference for the vector paths, and the path of processors
/// without AVX2.
static inline float activationScalar(int kind, float input, float gradient) {
    const double x = input;
    if (kind == BP_ACTIVATION_TANH) {
        const double a = fabs(x), e = expScalar(-2.0 * a);
        const double t = copysign((1.0 - e) / (1.0 + e), x);
        return (float)(a < TANH_IDENTITY_BELOW ? x : t);
    }
    if (kind == BP_ACTIVATION_GELU || kind == BP_ACTIVATION_GELU_BACKWARD) {
        return geluScalar(kind == BP_ACTIVATION_GELU_BACKWARD, x, gradient);
    }
    const double e = expScalar(-fabs(x));
    const double s = (x >= 0 ? 1.0 : e) / (1.0 + e);
    switch (kind) {
    case BP_ACTIVATION_SIGMOID: return (float)s;
    case BP_ACTIVATION_SILU: return (float)(x * s);
    default: return (float)(((double)gradient * s) * (1.0 + x * (1.0 - s)));
    }
}

static void activationArrayScalar(int kind, const float *x, const float *g, float *out, long count) {
    for (long i = 0; i < count; i++) out[i] = activationScalar(kind, x[i], g ? g[i] : 0);
}

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#define TARGET2 __attribute__((target("avx2,fma")))
#define TARGET512 __attribute__((target("avx512f,avx2,fma")))

/// `expScalar` on four lanes.
static inline TARGET2 __m256d exp4(__m256d t) {
    const __m256d lowest = _mm256_set1_pd(LOWEST);
    const __m256d below = _mm256_cmp_pd(t, lowest, _CMP_LT_OQ);
    const __m256d tc = _mm256_blendv_pd(t, lowest, below);
    const __m256d shifter = _mm256_set1_pd(SHIFTER);
    const __m256d shifted = _mm256_fmadd_pd(tc, _mm256_set1_pd(LOG2E), shifter);
    const __m256d k = _mm256_sub_pd(shifted, shifter);
    __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_HI), tc);
    r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_LO), r);
    const __m256d r2 = _mm256_mul_pd(r, r), r4 = _mm256_mul_pd(r2, r2), r8 = _mm256_mul_pd(r4, r4);
    __m256d pairs[6];
    for (int n = 0; n < 6; n++) {
        pairs[n] = _mm256_fmadd_pd(_mm256_set1_pd(TAYLOR[2 * n + 1]), r, _mm256_set1_pd(TAYLOR[2 * n]));
    }
    const __m256d low = _mm256_fmadd_pd(pairs[1], r2, pairs[0]), middle = _mm256_fmadd_pd(pairs[3], r2, pairs[2]);
    const __m256d high = _mm256_fmadd_pd(pairs[5], r2, pairs[4]);
    const __m256d p = _mm256_fmadd_pd(high, r8, _mm256_fmadd_pd(middle, r4, low));
    // 2^k: k's bits sit in the low bits of `shifted` (k + 1.5·2⁵²).
    const __m256i exponent = _mm256_add_epi64(
        _mm256_sub_epi64(_mm256_castpd_si256(shifted), _mm256_castpd_si256(shifter)), _mm256_set1_epi64x(1023));
    const __m256d result = _mm256_mul_pd(p, _mm256_castsi256_pd(_mm256_slli_epi64(exponent, 52)));
    return _mm256_blendv_pd(result, _mm256_setzero_pd(), below);
}

/// `geluQScalar` on four lanes.
static inline TARGET2 __m256d geluQ4(__m256d s) {
    const __m256d s2 = _mm256_mul_pd(s, s), s4 = _mm256_mul_pd(s2, s2), s8 = _mm256_mul_pd(s4, s4);
    const __m256d s16 = _mm256_mul_pd(s8, s8);
    __m256d pairs[12], fours[6], eights[3];
    for (int n = 0; n < 12; n++) {
        pairs[n] = _mm256_fmadd_pd(_mm256_set1_pd(GELU_Q[2 * n + 1]), s, _mm256_set1_pd(GELU_Q[2 * n]));
    }
    for (int n = 0; n < 6; n++) fours[n] = _mm256_fmadd_pd(pairs[2 * n + 1], s2, pairs[2 * n]);
    for (int n = 0; n < 3; n++) eights[n] = _mm256_fmadd_pd(fours[2 * n + 1], s4, fours[2 * n]);
    return _mm256_fmadd_pd(eights[2], s16, _mm256_fmadd_pd(eights[1], s8, eights[0]));
}

/// `geluScalar` on four lanes.
static inline TARGET2 __m256d gelu4(int backward, __m256d x, __m256d g) {
    const __m256d one = _mm256_set1_pd(1.0), half = _mm256_set1_pd(0.5), three = _mm256_set1_pd(3.0);
    const __m256d magnitude = _mm256_andnot_pd(_mm256_set1_pd(-0.0), x);
    const __m256d a = _mm256_min_pd(_mm256_mul_pd(magnitude, _mm256_set1_pd(INVERSE_ROOT2)), _mm256_set1_pd(GELU_A_MAX));
    const __m256d s = _mm256_div_pd(_mm256_sub_pd(three, a), _mm256_add_pd(three, a));
    const __m256d e = exp4(_mm256_mul_pd(_mm256_mul_pd(_mm256_set1_pd(-0.5), x), x));
    const __m256d t = _mm256_mul_pd(half, _mm256_add_pd(s, one));
    const __m256d h = _mm256_mul_pd(_mm256_mul_pd(_mm256_mul_pd(half, t), geluQ4(s)), e);
    const __m256d negative = _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_LT_OQ);
    const __m256d cdf = _mm256_blendv_pd(_mm256_sub_pd(one, h), h, negative);
    if (!backward) {
        const __m256d tiny = _mm256_cmp_pd(magnitude, _mm256_set1_pd(GELU_TINY), _CMP_LT_OQ);
        const __m256d nudge = _mm256_blendv_pd(
            _mm256_set1_pd(0.5 + GELU_TINY_STEP), _mm256_set1_pd(0.5 - GELU_TINY_STEP), negative);
        const __m256d nudged = _mm256_mul_pd(x, nudge);
        return _mm256_blendv_pd(_mm256_mul_pd(x, cdf), nudged, tiny);
    }
    const __m256d density = _mm256_mul_pd(_mm256_mul_pd(x, e), _mm256_set1_pd(INVERSE_ROOT_2PI));
    return _mm256_mul_pd(g, _mm256_add_pd(cdf, density));
}

/// `activationScalar` on four lanes.
static inline TARGET2 __m256d activation4(int kind, __m256d x, __m256d g) {
    if (kind == BP_ACTIVATION_GELU || kind == BP_ACTIVATION_GELU_BACKWARD) {
        return gelu4(kind == BP_ACTIVATION_GELU_BACKWARD, x, g);
    }
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d sign = _mm256_set1_pd(-0.0);
    const __m256d a = _mm256_andnot_pd(sign, x);
    if (kind == BP_ACTIVATION_TANH) {
        const __m256d e = exp4(_mm256_mul_pd(a, _mm256_set1_pd(-2.0)));
        const __m256d magnitude = _mm256_div_pd(_mm256_sub_pd(one, e), _mm256_add_pd(one, e));
        const __m256d t = _mm256_or_pd(_mm256_andnot_pd(sign, magnitude), _mm256_and_pd(sign, x));
        const __m256d tiny = _mm256_cmp_pd(a, _mm256_set1_pd(TANH_IDENTITY_BELOW), _CMP_LT_OQ);
        return _mm256_blendv_pd(t, x, tiny);
    }
    const __m256d e = exp4(_mm256_xor_pd(a, sign));
    const __m256d nonnegative = _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GE_OQ);
    const __m256d s = _mm256_div_pd(_mm256_blendv_pd(e, one, nonnegative), _mm256_add_pd(one, e));
    switch (kind) {
    case BP_ACTIVATION_SIGMOID: return s;
    case BP_ACTIVATION_SILU: return _mm256_mul_pd(x, s);
    default: return _mm256_mul_pd(_mm256_mul_pd(g, s), _mm256_add_pd(one, _mm256_mul_pd(x, _mm256_sub_pd(one, s))));
    }
}

static TARGET2 void activationArrayAVX2(int kind, const float *x, const float *g, float *out, long count) {
    long i = 0;
    for (; i + 4 <= count; i += 4) {
        const __m256d gradient = g ? _mm256_cvtps_pd(_mm_loadu_ps(g + i)) : _mm256_setzero_pd();
        _mm_storeu_ps(out + i, _mm256_cvtpd_ps(activation4(kind, _mm256_cvtps_pd(_mm_loadu_ps(x + i)), gradient)));
    }
    if (i < count) {  // the last 1-3 elements, through a vector of 4 padded with zeros
        float xs[4] = {0}, gs[4] = {0}, results[4];
        memcpy(xs, x + i, (size_t)(count - i) * sizeof(float));
        if (g) memcpy(gs, g + i, (size_t)(count - i) * sizeof(float));
        _mm_storeu_ps(results, _mm256_cvtpd_ps(activation4(kind, _mm256_cvtps_pd(_mm_loadu_ps(xs)),
                                   _mm256_cvtps_pd(_mm_loadu_ps(gs)))));
        memcpy(out + i, results, (size_t)(count - i) * sizeof(float));
    }
}

/// `expScalar` on eight lanes.
static inline TARGET512 __m512d exp8(__m512d t) {
    const __m512d lowest = _mm512_set1_pd(LOWEST);
    const __mmask8 below = _mm512_cmp_pd_mask(t, lowest, _CMP_LT_OQ);
    const __m512d tc = _mm512_mask_blend_pd(below, t, lowest);
    const __m512d shifter = _mm512_set1_pd(SHIFTER);
    const __m512d shifted = _mm512_fmadd_pd(tc, _mm512_set1_pd(LOG2E), shifter);
    const __m512d k = _mm512_sub_pd(shifted, shifter);
    __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LN2_HI), tc);
    r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LN2_LO), r);
    const __m512d r2 = _mm512_mul_pd(r, r), r4 = _mm512_mul_pd(r2, r2), r8 = _mm512_mul_pd(r4, r4);
    __m512d pairs[6];
    for (int n = 0; n < 6; n++) {
        pairs[n] = _mm512_fmadd_pd(_mm512_set1_pd(TAYLOR[2 * n + 1]), r, _mm512_set1_pd(TAYLOR[2 * n]));
    }
    const __m512d low = _mm512_fmadd_pd(pairs[1], r2, pairs[0]), middle = _mm512_fmadd_pd(pairs[3], r2, pairs[2]);
    const __m512d high = _mm512_fmadd_pd(pairs[5], r2, pairs[4]);
    const __m512d p = _mm512_fmadd_pd(high, r8, _mm512_fmadd_pd(middle, r4, low));
    const __m512i exponent = _mm512_add_epi64(
        _mm512_sub_epi64(_mm512_castpd_si512(shifted), _mm512_castpd_si512(shifter)), _mm512_set1_epi64(1023));
    const __m512d result = _mm512_mul_pd(p, _mm512_castsi512_pd(_mm512_slli_epi64(exponent, 52)));
    return _mm512_mask_blend_pd(below, result, _mm512_setzero_pd());
}

/// `geluQScalar` on eight lanes.
static inline TARGET512 __m512d geluQ8(__m512d s) {
    const __m512d s2 = _mm512_mul_pd(s, s), s4 = _mm512_mul_pd(s2, s2), s8 = _mm512_mul_pd(s4, s4);
    const __m512d s16 = _mm512_mul_pd(s8, s8);
    __m512d pairs[12], fours[6], eights[3];
    for (int n = 0; n < 12; n++) {
        pairs[n] = _mm512_fmadd_pd(_mm512_set1_pd(GELU_Q[2 * n + 1]), s, _mm512_set1_pd(GELU_Q[2 * n]));
    }
    for (int n = 0; n < 6; n++) fours[n] = _mm512_fmadd_pd(pairs[2 * n + 1], s2, pairs[2 * n]);
    for (int n = 0; n < 3; n++) eights[n] = _mm512_fmadd_pd(fours[2 * n + 1], s4, fours[2 * n]);
    return _mm512_fmadd_pd(eights[2], s16, _mm512_fmadd_pd(eights[1], s8, eights[0]));
}

/// `geluScalar` on eight lanes.
static inline TARGET512 __m512d gelu8(int backward, __m512d x, __m512d g) {
    const __m512d one = _mm512_set1_pd(1.0), half = _mm512_set1_pd(0.5), three = _mm512_set1_pd(3.0);
    const __m512d magnitude = _mm512_abs_pd(x);
    const __m512d a = _mm512_min_pd(_mm512_mul_pd(magnitude, _mm512_set1_pd(INVERSE_ROOT2)), _mm512_set1_pd(GELU_A_MAX));
    const __m512d s = _mm512_div_pd(_mm512_sub_pd(three, a), _mm512_add_pd(three, a));
    const __m512d e = exp8(_mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(-0.5), x), x));
    const __m512d t = _mm512_mul_pd(half, _mm512_add_pd(s, one));
    const __m512d h = _mm512_mul_pd(_mm512_mul_pd(_mm512_mul_pd(half, t), geluQ8(s)), e);
    const __mmask8 negative = _mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_LT_OQ);
    const __m512d cdf = _mm512_mask_blend_pd(negative, _mm512_sub_pd(one, h), h);
    if (!backward) {
        const __mmask8 tiny = _mm512_cmp_pd_mask(magnitude, _mm512_set1_pd(GELU_TINY), _CMP_LT_OQ);
        const __m512d nudge =
            _mm512_mask_blend_pd(negative, _mm512_set1_pd(0.5 + GELU_TINY_STEP), _mm512_set1_pd(0.5 - GELU_TINY_STEP));
        const __m512d nudged = _mm512_mul_pd(x, nudge);
        return _mm512_mask_blend_pd(tiny, _mm512_mul_pd(x, cdf), nudged);
    }
    const __m512d density = _mm512_mul_pd(_mm512_mul_pd(x, e), _mm512_set1_pd(INVERSE_ROOT_2PI));
    return _mm512_mul_pd(g, _mm512_add_pd(cdf, density));
}

/// `activationScalar` on eight lanes.
static inline TARGET512 __m512d activation8(int kind, __m512d x, __m512d g) {
    if (kind == BP_ACTIVATION_GELU || kind == BP_ACTIVATION_GELU_BACKWARD) {
        return gelu8(kind == BP_ACTIVATION_GELU_BACKWARD, x, g);
    }
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512d a = _mm512_abs_pd(x);
    if (kind == BP_ACTIVATION_TANH) {
        const __m512d e = exp8(_mm512_mul_pd(a, _mm512_set1_pd(-2.0)));
        const __m512d magnitude = _mm512_div_pd(_mm512_sub_pd(one, e), _mm512_add_pd(one, e));
        const __m512i sign = _mm512_set1_epi64((long long)0x8000000000000000ULL);
        const __m512i t = _mm512_or_si512(_mm512_andnot_si512(sign, _mm512_castpd_si512(magnitude)),
            _mm512_and_si512(sign, _mm512_castpd_si512(x)));
        const __mmask8 tiny = _mm512_cmp_pd_mask(a, _mm512_set1_pd(TANH_IDENTITY_BELOW), _CMP_LT_OQ);
        return _mm512_mask_blend_pd(tiny, _mm512_castsi512_pd(t), x);
    }
    const __m512i sign = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    const __m512d e = exp8(_mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(a), sign)));
    const __mmask8 nonnegative = _mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GE_OQ);
    const __m512d s = _mm512_div_pd(_mm512_mask_blend_pd(nonnegative, e, one), _mm512_add_pd(one, e));
    switch (kind) {
    case BP_ACTIVATION_SIGMOID: return s;
    case BP_ACTIVATION_SILU: return _mm512_mul_pd(x, s);
    default: return _mm512_mul_pd(_mm512_mul_pd(g, s), _mm512_add_pd(one, _mm512_mul_pd(x, _mm512_sub_pd(one, s))));
    }
}

static TARGET512 void activationArrayAVX512(int kind, const float *x, const float *g, float *out, long count) {
    for (long i = 0; i < count; i += 8) {
        const __mmask16 lanes = count - i >= 8 ? (__mmask16)0xFF : (__mmask16)((1u << (count - i)) - 1);
        const __m512d input = _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(lanes, x + i)));
        const __m512d gradient =
            g ? _mm512_cvtps_pd(_mm512_castps512_ps256(_mm512_maskz_loadu_ps(lanes, g + i))) : _mm512_setzero_pd();
        const __m256 result = _mm512_cvtpd_ps(activation8(kind, input, gradient));
        _mm512_mask_storeu_ps(out + i, lanes, _mm512_castps256_ps512(result));
    }
}

#endif

void bp_activation(int kind, const float *x, const float *g, float *out, long count, int vectors) {
#if defined(__x86_64__) || defined(_M_X64)
    if (vectors && bp_kernels_use_avx512()) {
        activationArrayAVX512(kind, x, g, out, count);
        return;
    }
    if (vectors && bp_gemm_avx2_available()) {
        activationArrayAVX2(kind, x, g, out, count);
        return;
    }
#endif
    (void)vectors;
    activationArrayScalar(kind, x, g, out, count);
}
