// The cross-entropy's exponentials (`bp_softmax_rows`, Sources/CKernels/Softmax.c) against the C
// library's `exp`, their peer: accuracy in units in the last place on 1.1 million exponents from 0
// to -760, the bits of the scalar, AVX2 and AVX-512 paths against each other, and the time of a
// minibatch's 64 rows of 10 against the same exponentials and sums with `exp` one at a time.
// Run by Benchmarks/softmax_exp.sh.

#include "CKernels.h"

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

/// The distance in units in the last place between two finite doubles of one sign.
static long long ulps(double a, double b) {
    long long x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return llabs(x - y);
}

/// The library's way: each row's maximum, `exp(x - m)` one at a time, the sum in order.
static void libraryRows(const float *x, long rows, long classes, float *maxima, double *sums, double *e) {
    for (long row = 0; row < rows; row++) {
        float m = -INFINITY;
        for (long j = 0; j < classes; j++) m = x[row * classes + j] >= m ? x[row * classes + j] : m;
        double total = 0;
        for (long j = 0; j < classes; j++) {
            e[row * classes + j] = exp((double)x[row * classes + j] - (double)m);
            total += e[row * classes + j];
        }
        maxima[row] = m;
        sums[row] = total;
    }
}

int main(void) {
    const long rows = 100000, classes = 11, n = rows * classes;
    float *x = malloc((size_t)n * sizeof(float)), *maxima = malloc((size_t)rows * sizeof(float));
    double *e = malloc((size_t)n * sizeof(double)), *first = malloc((size_t)n * sizeof(double));
    double *sums = malloc((size_t)rows * sizeof(double));
    if (!x || !maxima || !e || !first || !sums) return 1;
    srand(1);
    for (long i = 0; i < n; i++) {
        const double u = rand() / (double)RAND_MAX;
        x[i] = (float)(i % 3 == 0 ? -u * 760 : i % 3 == 1 ? -u * 30 : -u * 1e-3);
    }
    for (long row = 0; row < rows; row++) x[row * classes + row % classes] = 0;  // each row's maximum 0
    const char *paths[3] = {"widest", "AVX2", "scalar"};
    for (int path = 0; path < 3; path++) {
        bp_kernels_allow_avx512(path == 0);
        if (path < 2) {
            bp_softmax_rows(x, rows, classes, maxima, sums, e);
        } else {
            for (long i = 0; i < n; i++) e[i] = bp_exp_nonpositive((double)x[i]);
        }
        long long worst = 0;
        long differing = 0, againstFirst = 0;
        for (long i = 0; i < n; i++) {
            const long long distance = ulps(e[i], exp((double)x[i]));
            if (distance > worst) worst = distance;
            differing += distance != 0;
            if (path > 0) againstFirst += memcmp(&e[i], &first[i], sizeof(double)) != 0;
        }
        if (path == 0) memcpy(first, e, (size_t)n * sizeof(double));
        printf("%-6s path: at most %lld ulp from glibc's exp, %.2f%% of %ld differ; %ld differ from the first path\n",
            paths[path], worst, 100.0 * (double)differing / (double)n, n, againstFirst);
    }
    bp_kernels_allow_avx512(1);
    float logits[640], m[64];
    double exponentials[640], s[64];
    for (int i = 0; i < 640; i++) logits[i] = -(float)(i % 10) * 1.37f + (float)(i % 7) * 0.3f;
    double best[3] = {1, 1, 1};
    for (int round = 0; round < 4000; round++) {
        for (int version = 0; version < 3; version++) {
            bp_kernels_allow_avx512(version == 0);
            const double start = now();
            if (version < 2) {
                bp_softmax_rows(logits, 64, 10, m, s, exponentials);
            } else {
                libraryRows(logits, 64, 10, m, s, exponentials);
            }
            const double seconds = now() - start;
            if (seconds < best[version]) best[version] = seconds;
        }
    }
    bp_kernels_allow_avx512(1);
    printf("64 rows of 10 (maxima, exponentials, sums), one core, best of 4000: bp_softmax_rows %.2f us (widest), "
           "%.2f us (AVX2); glibc exp one at a time %.2f us\n",
        best[0] * 1e6, best[1] * 1e6, best[2] * 1e6);
    free(x), free(maxima), free(e), free(first), free(sums);
    return 0;
}
