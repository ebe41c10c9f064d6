// What AVX2's masked loads and stores cost against plain ones, on one core: the reason the kernels
// avoid them inside loops (`Im2col.c`'s max pooling, `Gemm.c`'s `packsPartialPanel`). Built and
// run by `Benchmarks/masked_loads.sh`.
//
// Each loop issues independent 8-lane loads (summed into four accumulators) or stores, 8 or 14
// floats apart, over 32 KiB that stay in L1; best of 200 passes, nanoseconds per instruction.
//
// On Zen 1 (AMD EPYC, family 23, 2026-12-05, three runs): plain loads 0.56-0.94 ns, masked loads
// 4.2-5.4 ns (5.7-8x) whatever the mask; plain stores 0.86-1.4 ns, masked stores 5.2-7.4 ns.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define TARGET __attribute__((target("avx2,fma"), noinline))

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const int lanesTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/// Sums 8-lane loads `stride` floats apart over `x[0..<count]`, masked to `lanes` lanes or not.
static TARGET float loads(const float *x, long count, int masked, int lanes, long stride) {
    const __m256i mask = _mm256_loadu_si256((const __m256i *)(lanesTable + 8 - lanes));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (long i = 0; i + 3 * stride + 8 <= count; i += 4 * stride) {
        if (masked) {
            a0 = _mm256_add_ps(a0, _mm256_maskload_ps(x + i, mask));
            a1 = _mm256_add_ps(a1, _mm256_maskload_ps(x + i + stride, mask));
            a2 = _mm256_add_ps(a2, _mm256_maskload_ps(x + i + 2 * stride, mask));
            a3 = _mm256_add_ps(a3, _mm256_maskload_ps(x + i + 3 * stride, mask));
        } else {
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + stride));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 2 * stride));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 3 * stride));
        }
    }
    float lanesOut[8];
    _mm256_storeu_ps(lanesOut, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return lanesOut[0];
}

/// 8-lane stores `stride` floats apart over `x[0..<count]`, masked to `lanes` lanes or not.
static TARGET void stores(float *x, long count, int masked, int lanes, long stride) {
    const __m256i mask = _mm256_loadu_si256((const __m256i *)(lanesTable + 8 - lanes));
    const __m256 value = _mm256_set1_ps(1.5f);
    for (long i = 0; i + 8 <= count; i += stride) {
        if (masked) {
            _mm256_maskstore_ps(x + i, mask, value);
        } else {
            _mm256_storeu_ps(x + i, value);
        }
    }
}

int main(void) {
    const long count = 8192;
    float *x = aligned_alloc(64, (size_t)count * sizeof(float));
    if (!x) return 1;
    for (long i = 0; i < count; i++) x[i] = 1;
    volatile float sink = 0;
    printf("one core, best of 200 passes over 32 KiB, ns per instruction\n");
    for (int store = 0; store < 2; store++) {
        for (long stride = 8; stride <= 14; stride += 6) {
            for (int lanes = 2; lanes <= 8; lanes += 6) {
                double best[2] = {1e9, 1e9};
                for (int pass = 0; pass < 200; pass++) {
                    for (int masked = 0; masked < 2; masked++) {
                        const double start = now();
                        if (store) {
                            stores(x, count, masked, lanes, stride);
                        } else {
                            sink += loads(x, count, masked, lanes, stride);
                        }
                        const double elapsed = now() - start;
                        if (elapsed < best[masked]) best[masked] = elapsed;
                    }
                }
                const double instructions = store ? (double)((count - 8) / stride + 1) : (double)(count / stride);
                printf("%-6s %2ld floats apart, %d lanes: plain %5.2f ns, masked %5.2f ns (%.1fx)\n",
                    store ? "stores" : "loads", stride, lanes, best[0] * 1e9 / instructions,
                    best[1] * 1e9 / instructions, best[1] / best[0]);
            }
        }
    }
    free(x);
    return 0;
}
