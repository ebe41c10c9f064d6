// Max pooling's kernels (`bp_max_pool`, `bp_max_pool_backward` in Sources/CKernels/Im2col.c) on the
// cnn preset's two poolings and a 7 x 7 one, 2 x 2 at stride 2, on one core: best of 50 calls each,
// with a checksum of the outputs (the same for any version that computes the same results). Built
// and run by `Benchmarks/max_pool.sh`.
//
// On Zen 1 (2026-12-05, five alternating runs of the build before and after the 2 x 2 kernel's
// rows stopped using masked loads): [128, 16, 28, 28] forward 1.40-1.48 -> 1.13-1.34 ms,
// [128, 32, 14, 14] 1.37-1.43 -> 0.60-0.70 ms, [64, 64, 7, 7] 0.51 -> 0.32 ms.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "CKernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void) {
    const long shapes[][4] = {{128, 16, 28, 28}, {128, 32, 14, 14}, {64, 64, 7, 7}};
    printf("one core, best of 50 calls, 2 x 2 windows at stride 2\n");
    for (int s = 0; s < 3; s++) {
        const long n = shapes[s][0], c = shapes[s][1], h = shapes[s][2], w = shapes[s][3];
        const BPWindow g = {n, c, h, w, 2, 2, 2, 2, 0, 0, h / 2, w / 2};
        const long planes = n * c, inputs = planes * h * w, outputs = planes * g.oh * g.ow;
        float *x = malloc((size_t)inputs * sizeof(float)), *out = malloc((size_t)outputs * sizeof(float));
        float *gradient = malloc((size_t)inputs * sizeof(float));
        int *winners = malloc((size_t)outputs * sizeof(int)), *pieces = malloc((size_t)outputs * sizeof(int));
        if (!x || !out || !gradient || !winners || !pieces) return 1;
        srand(1);
        // Values from a small set, so that some windows hold their maximum twice (a tie).
        for (long i = 0; i < inputs; i++) x[i] = (float)(rand() % 1000);
        double forward = 1e9, backward = 1e9;
        for (int call = 0; call < 50; call++) {
            double start = now();
            bp_max_pool(x, out, winners, pieces, &g, 0, planes);
            const double f = now() - start;
            start = now();
            bp_max_pool_backward(out, winners, gradient, &g, 0, planes);
            const double b = now() - start;
            if (f < forward) forward = f;
            if (b < backward) backward = b;
        }
        double checksum = 0;
        for (long i = 0; i < outputs; i++) checksum += out[i] + winners[i] * 1e-3 + pieces[i];
        for (long i = 0; i < inputs; i++) checksum += gradient[i] * 1e-6;
        printf("[%ld, %ld, %ld, %ld]: forward %7.1f us, backward %7.1f us, checksum %.9g\n", n, c, h, w,
            forward * 1e6, backward * 1e6, checksum);
        free(x);
        free(out);
        free(gradient);
        free(winners);
        free(pieces);
    }
    return 0;
}
