// Batch normalisation's passes over a stretch of one channel (BatchNorm.swift calls them for each
// image's plane of the channel): the sums in Double, the normalised output, and the input
// gradient.
//
// Each computes exactly what the plain loops of its doc comment compute, in the same order, on
// every CPU: the sums keep four Double lanes (lane j takes the elements i ≡ j mod 4, in order;
// then lane 0 + lane 1 + lane 2 + lane 3 in order, then the tail in order), and the elementwise
// passes round each operation as written, never fusing a multiply and an add. The AVX2 versions
// only do four or eight of those at once. The tests compare them with Swift loops written from
// the formulas, bit for bit, and the layer with autograd.

#pragma STDC FP_CONTRACT OFF

#include "CKernels.h"

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

/// 0 + l0 + l1 + l2 + l3, in that order.
static inline TARGET __attribute__((always_inline)) double laneTotal(__m256d lanes) {
    double values[4];
    _mm256_storeu_pd(values, lanes);
    double total = 0;
    for (int j = 0; j < 4; j++) total += values[j];
    return total;
}

static TARGET double sumAVX2(const float *x, long count) {
    __m256d lanes = _mm256_setzero_pd();
    long i = 0;
    for (; i + 4 <= count; i += 4) lanes = _mm256_add_pd(lanes, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
    double total = laneTotal(lanes);
    for (; i < count; i++) total += (double)x[i];
    return total;
}

static TARGET double squaredDeviationsAVX2(const float *x, long count, double mean) {
    __m256d lanes = _mm256_setzero_pd();
    const __m256d center = _mm256_set1_pd(mean);
    long i = 0;
    for (; i + 4 <= count; i += 4) {
        const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), center);
        lanes = _mm256_add_pd(lanes, _mm256_mul_pd(d, d));
    }
    double total = laneTotal(lanes);
    for (; i < count; i++) {
        const double d = (double)x[i] - mean;
        total += d * d;
    }
    return total;
}

static TARGET void gradientSumsAVX2(const float *g, const float *x, long count, float mean, float invStd,
    double *sums) {
    __m256d sumG = _mm256_setzero_pd(), sumGXhat = _mm256_setzero_pd();
    const __m128 center = _mm_set1_ps(mean), scale = _mm_set1_ps(invStd);
    long i = 0;
    for (; i + 4 <= count; i += 4) {
        const __m128 gv = _mm_loadu_ps(g + i);
        const __m128 xhat = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(x + i), center), scale);
        sumG = _mm256_add_pd(sumG, _mm256_cvtps_pd(gv));
        sumGXhat = _mm256_add_pd(sumGXhat, _mm256_cvtps_pd(_mm_mul_ps(gv, xhat)));
    }
    double totalG = laneTotal(sumG), totalGXhat = laneTotal(sumGXhat);
    for (; i < count; i++) {
        const float xhat = (x[i] - mean) * invStd;
        totalG += (double)g[i];
        totalGXhat += (double)(g[i] * xhat);
    }
    sums[0] = totalG;
    sums[1] = totalGXhat;
}

static TARGET void normalizeAVX2(const float *x, float *out, long count, float mean, float scale, float shift) {
    const __m256 m = _mm256_set1_ps(mean), s = _mm256_set1_ps(scale), b = _mm256_set1_ps(shift);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), s), b));
    }
    for (; i < count; i++) out[i] = (x[i] - mean) * scale + shift;
}

static TARGET void inputGradientAVX2(const float *g, const float *x, float *out, long count, float mean,
    float invStd, float meanG, float meanGXhat, float scale) {
    const __m256 m = _mm256_set1_ps(mean), is = _mm256_set1_ps(invStd), mg = _mm256_set1_ps(meanG);
    const __m256 mgx = _mm256_set1_ps(meanGXhat), s = _mm256_set1_ps(scale);
    long i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m), is);
        const __m256 centered = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(g + i), mg), _mm256_mul_ps(xhat, mgx));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, centered));
    }
    for (; i < count; i++) {
        const float xhat = (x[i] - mean) * invStd;
        out[i] = scale * (g[i] - meanG - xhat * meanGXhat);
    }
}

#define HAS_AVX2 bp_gemm_avx2_available()
#else
#define HAS_AVX2 0
#endif

double bp_bn_sum(const float *x, long count) {
#if defined(__x86_64__) || defined(_M_X64)
    if (HAS_AVX2) return sumAVX2(x, count);
#endif
    double lanes[4] = {0, 0, 0, 0};
    long i = 0;
    for (; i + 4 <= count; i += 4) {
        for (int j = 0; j < 4; j++) lanes[j] += (double)x[i + j];
    }
    double total = 0;
    for (int j = 0; j < 4; j++) total += lanes[j];
    for (; i < count; i++) total += (double)x[i];
    return total;
}

double bp_bn_squared_deviations(const float *x, long count, double mean) {
#if defined(__x86_64__) || defined(_M_X64)
    if (HAS_AVX2) return squaredDeviationsAVX2(x, count, mean);
#endif
    double lanes[4] = {0, 0, 0, 0};
    long i = 0;
    for (; i + 4 <= count; i += 4) {
        for (int j = 0; j < 4; j++) {
            const double d = (double)x[i + j] - mean;
            lanes[j] += d * d;
        }
    }
    double total = 0;
    for (int j = 0; j < 4; j++) total += lanes[j];
    for (; i < count; i++) {
        const double d = (double)x[i] - mean;
        total += d * d;
    }
    return total;
}

void bp_bn_gradient_sums(const float *g, const float *x, long count, float mean, float invStd, double *sums) {
#if defined(__x86_64__) || defined(_M_X64)
    if (HAS_AVX2) {
        gradientSumsAVX2(g, x, count, mean, invStd, sums);
        return;
    }
#endif
    double lanesG[4] = {0, 0, 0, 0}, lanesGXhat[4] = {0, 0, 0, 0};
    long i = 0;
    for (; i + 4 <= count; i += 4) {
        for (int j = 0; j < 4; j++) {
            const float xhat = (x[i + j] - mean) * invStd;
            lanesG[j] += (double)g[i + j];
            lanesGXhat[j] += (double)(g[i + j] * xhat);
        }
    }
    double totalG = 0, totalGXhat = 0;
    for (int j = 0; j < 4; j++) {
        totalG += lanesG[j];
        totalGXhat += lanesGXhat[j];
    }
    for (; i < count; i++) {
        const float xhat = (x[i] - mean) * invStd;
        totalG += (double)g[i];
        totalGXhat += (double)(g[i] * xhat);
    }
    sums[0] = totalG;
    sums[1] = totalGXhat;
}

void bp_bn_normalize(const float *x, float *out, long count, float mean, float scale, float shift) {
#if defined(__x86_64__) || defined(_M_X64)
    if (HAS_AVX2) {
        normalizeAVX2(x, out, count, mean, scale, shift);
        return;
    }
#endif
    for (long i = 0; i < count; i++) out[i] = (x[i] - mean) * scale + shift;
}

void bp_bn_input_gradient(const float *g, const float *x, float *out, long count, float mean, float invStd,
    float meanG, float meanGXhat, float scale) {
#if defined(__x86_64__) || defined(_M_X64)
    if (HAS_AVX2) {
        inputGradientAVX2(g, x, out, count, mean, invStd, meanG, meanGXhat, scale);
        return;
    }
#endif
    for (long i = 0; i < count; i++) {
        const float xhat = (x[i] - mean) * invStd;
        out[i] = scale * (g[i] - meanG - xhat * meanGXhat);
    }
}

// The same passes over whole rows of a batch of features, `x` of `rows × c` values in rows (the
// layout of BatchNorm1d's input, where each image's plane of a channel is one value): per feature,
// the same operations in the same order as the functions above applied to each row's value in
// turn, so the same bits. Plain loops over the features, which the compiler turns into vectors
// (each feature's sum stays its own, in row order; the pragma above keeps every operation
// rounded as written). Twice: for AVX2 where the processor has it, and for the baseline.

#define BN_ROWS_BODIES(SUFFIX, ATTRIBUTES)                                                                        \
    static ATTRIBUTES void rowsSum##SUFFIX(const float *x, long rows, long c, double *sums) {                     \
        for (long r = 0; r < rows; r++) {                                                                         \
            const float *row = x + r * c;                                                                         \
            for (long k = 0; k < c; k++) sums[k] += (double)row[k];                                               \
        }                                                                                                         \
    }                                                                                                             \
    static ATTRIBUTES void rowsSquares##SUFFIX(const float *x, long rows, long c, const double *mean,              \
        double *squares) {                                                                                        \
        for (long r = 0; r < rows; r++) {                                                                         \
            const float *row = x + r * c;                                                                         \
            for (long k = 0; k < c; k++) {                                                                        \
                const double d = (double)row[k] - mean[k];                                                        \
                squares[k] += d * d;                                                                              \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    static ATTRIBUTES void rowsGradientSums##SUFFIX(const float *g, const float *x, long rows, long c,             \
        const float *mean, const float *invStd, double *sumG, double *sumGXhat) {                                 \
        for (long r = 0; r < rows; r++) {                                                                         \
            const float *gRow = g + r * c, *xRow = x + r * c;                                                     \
            for (long k = 0; k < c; k++) {                                                                        \
                const float xhat = (xRow[k] - mean[k]) * invStd[k];                                               \
                sumG[k] += (double)gRow[k];                                                                       \
                sumGXhat[k] += (double)(gRow[k] * xhat);                                                          \
            }                                                                                                     \
        }                                                                                                         \
    }                                                                                                             \
    static ATTRIBUTES void rowsNormalize##SUFFIX(const float *x, float *out, long rows, long c, const float *mean,  \
        const float *scale, const float *shift) {                                                                 \
        for (long r = 0; r < rows; r++) {                                                                         \
            const float *row = x + r * c;                                                                         \
            float *outRow = out + r * c;                                                                          \
            for (long k = 0; k < c; k++) outRow[k] = (row[k] - mean[k]) * scale[k] + shift[k];                    \
        }                                                                                                         \
    }                                                                                                             \
    static ATTRIBUTES void rowsInputGradient##SUFFIX(const float *g, const float *x, float *out, long rows,       \
        long c, const float *mean, const float *invStd, const float *meanG, const float *meanGXhat,              \
        const float *scale) {                                                                                     \
        for (long r = 0; r < rows; r++) {                                                                         \
            const float *gRow = g + r * c, *xRow = x + r * c;                                                     \
            float *outRow = out + r * c;                                                                          \
            for (long k = 0; k < c; k++) {                                                                        \
                const float xhat = (xRow[k] - mean[k]) * invStd[k];                                               \
                outRow[k] = scale[k] * (gRow[k] - meanG[k] - xhat * meanGXhat[k]);                                \
            }                                                                                                     \
        }                                                                                                         \
    }

BN_ROWS_BODIES(Baseline, )
#if defined(__x86_64__) || defined(_M_X64)
BN_ROWS_BODIES(AVX2, TARGET)
#define BN_ROWS_DISPATCH(NAME, ...)                                                                                \
    do {                                                                                                          \
        if (HAS_AVX2) NAME##AVX2(__VA_ARGS__);                                                                    \
        else NAME##Baseline(__VA_ARGS__);                                                                         \
    } while (0)
#else
#define BN_ROWS_DISPATCH(NAME, ...) NAME##Baseline(__VA_ARGS__)
#endif

void bp_bn_rows_sum(const float *x, long rows, long c, double *sums) {
    BN_ROWS_DISPATCH(rowsSum, x, rows, c, sums);
}

void bp_bn_rows_squared_deviations(const float *x, long rows, long c, const double *mean, double *squares) {
    BN_ROWS_DISPATCH(rowsSquares, x, rows, c, mean, squares);
}

void bp_bn_rows_gradient_sums(const float *g, const float *x, long rows, long c, const float *mean,
    const float *invStd, double *sumG, double *sumGXhat) {
    BN_ROWS_DISPATCH(rowsGradientSums, g, x, rows, c, mean, invStd, sumG, sumGXhat);
}

void bp_bn_rows_normalize(const float *x, float *out, long rows, long c, const float *mean, const float *scale,
    const float *shift) {
    BN_ROWS_DISPATCH(rowsNormalize, x, out, rows, c, mean, scale, shift);
}

void bp_bn_rows_input_gradient(const float *g, const float *x, float *out, long rows, long c, const float *mean,
    const float *invStd, const float *meanG, const float *meanGXhat, const float *scale) {
    BN_ROWS_DISPATCH(rowsInputGradient, g, x, out, rows, c, mean, invStd, meanG, meanGXhat, scale);
}
