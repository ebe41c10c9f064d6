// The direct convolution's two AVX2 layouts (Sources/CKernels/DirectConv.c) against each other on
// one core: rows (sixteen outputs of one row a tile; the weight gradient's flat planes) and
// channels (eight output channels of a pixel a vector), and the choice each function makes by
// itself (`layout` 0). For each shape: the best time of each, alternating, over 8 images (64 for
// the convnet's second layer and its input gradient). The forward passes must give the same bits,
// with and without bias; the weight gradients, two orders of the same sums, must agree within
// 1e-5 of the largest. Run by Benchmarks/conv_tiles.sh.

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

/// A value in [-0.5, 0.5) from a 64-bit linear congruential generator.
static float next(unsigned long long *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(*state >> 40) / (float)(1ULL << 24) - 0.5f;
}

typedef struct Shape {
    long c, h, w, cOut, k, padding, images;
} Shape;

int main(void) {
    if (!bp_gemm_avx2_available()) {
        printf("conv_tiles: this CPU has no AVX2 with FMA; the direct kernel does not run here\n");
        return 0;
    }
    const Shape shapes[] = {
        {16, 14, 14, 32, 3, 1, 64},  // the cnn preset's second layer, 64 images (a core's half of 128)
        {32, 14, 14, 16, 3, 1, 64},  // its input gradient (the flipped kernels over out.g)
        {16, 14, 14, 32, 3, 1, 8}, {32, 14, 14, 16, 3, 1, 8}, {1, 28, 28, 16, 3, 1, 8},
        {32, 7, 7, 64, 3, 1, 8}, {64, 4, 4, 64, 3, 1, 8}, {16, 5, 5, 24, 3, 1, 8},
        {16, 28, 28, 16, 3, 1, 8}, {8, 10, 10, 12, 5, 2, 8}, {3, 32, 32, 16, 3, 1, 8},
        {16, 32, 32, 32, 3, 1, 8}, {4, 28, 28, 8, 3, 1, 8}, {4, 28, 28, 16, 3, 1, 8},
        {6, 14, 14, 16, 3, 1, 8}, {4, 14, 14, 32, 3, 1, 8}, {4, 7, 7, 16, 3, 1, 8},
        {1, 7, 7, 16, 3, 1, 8}, {2, 7, 7, 8, 3, 1, 8}, {1, 14, 14, 16, 3, 1, 8},
        {3, 14, 14, 16, 3, 1, 8}, {8, 28, 28, 16, 3, 1, 8}, {8, 14, 14, 16, 3, 1, 8},
        {4, 10, 10, 8, 3, 1, 8},
    };
    printf("%-26s %7s %11s %11s %8s %11s %9s\n", "shape (c, h×w → cOut, k×k)", "images", "rows µs", "channels µs",
        "ratio", "chosen µs", "same bits");
    int allSame = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const Shape t = shapes[s];
        const long oh = t.h + 2 * t.padding - t.k + 1, ow = t.w + 2 * t.padding - t.k + 1;
        BPWindow g = {t.images, t.c, t.h, t.w, t.k, t.k, 1, 1, t.padding, t.padding, oh, ow};
        const long nx = t.images * t.c * t.h * t.w, nw = t.cOut * t.c * t.k * t.k, no = t.images * t.cOut * oh * ow;
        float *x = malloc((size_t)nx * sizeof(float)), *w = malloc((size_t)nw * sizeof(float));
        float *b = malloc((size_t)t.cOut * sizeof(float)), *out[3];
        for (int l = 0; l < 3; l++) out[l] = malloc((size_t)no * sizeof(float));
        unsigned long long state = 42 + s;
        for (long i = 0; i < nx; i++) x[i] = next(&state);
        for (long i = 0; i < nw; i++) w[i] = next(&state);
        for (long i = 0; i < t.cOut; i++) b[i] = next(&state);
        double best[3] = {1e30, 1e30, 1e30};
        const int rounds = t.images > 8 ? 20 : 60;
        for (int r = 0; r < rounds; r++) {
            for (int l = 0; l < 3; l++) {
                const double start = now();
                bp_conv_direct_forward(x, w, b, out[l], &g, t.cOut, 0, t.images, l);
                const double elapsed = now() - start;
                if (elapsed < best[l]) best[l] = elapsed;
            }
        }
        int same = memcmp(out[0], out[1], (size_t)no * sizeof(float)) == 0
            && memcmp(out[1], out[2], (size_t)no * sizeof(float)) == 0;
        for (int l = 0; l < 3; l++) bp_conv_direct_forward(x, w, NULL, out[l], &g, t.cOut, 0, t.images, l);
        same = same && memcmp(out[0], out[1], (size_t)no * sizeof(float)) == 0
            && memcmp(out[1], out[2], (size_t)no * sizeof(float)) == 0;
        allSame = allSame && same;
        char name[64];
        snprintf(name, sizeof name, "%ld, %ld×%ld → %ld, %ld×%ld", t.c, t.h, t.w, t.cOut, t.k, t.k);
        printf("%-26s %7ld %11.1f %11.1f %8.3f %11.1f %9s\n", name, t.images, best[1] * 1e6, best[2] * 1e6,
            best[2] / best[1], best[0] * 1e6, same ? "yes" : "NO");
        free(x), free(w), free(b);
        for (int l = 0; l < 3; l++) free(out[l]);
    }
    printf("\nweight gradient (w.g and b.g)\n%-26s %7s %11s %11s %8s %11s %9s\n", "shape (c, h×w → cOut, k×k)",
        "images", "rows µs", "channels µs", "ratio", "chosen µs", "agree");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const Shape t = shapes[s];
        if (s < 2) continue;  // (the 64-image shapes: the layer cuts its batch into pieces of 8)
        const long oh = t.h + 2 * t.padding - t.k + 1, ow = t.w + 2 * t.padding - t.k + 1;
        const long images = t.images;
        BPWindow g = {images, t.c, t.h, t.w, t.k, t.k, 1, 1, t.padding, t.padding, oh, ow};
        const long nx = images * t.c * t.h * t.w, ng = images * t.cOut * oh * ow, nw = t.cOut * t.c * t.k * t.k;
        float *x = malloc((size_t)nx * sizeof(float)), *gOut = malloc((size_t)ng * sizeof(float)), *wg[3], *bg[3];
        for (int l = 0; l < 3; l++) {
            wg[l] = malloc((size_t)nw * sizeof(float));
            bg[l] = malloc((size_t)t.cOut * sizeof(float));
        }
        unsigned long long state = 7 + s;
        for (long i = 0; i < nx; i++) x[i] = next(&state);
        for (long i = 0; i < ng; i++) gOut[i] = next(&state);
        double best[3] = {1e30, 1e30, 1e30};
        for (int r = 0; r < 60; r++) {
            for (int l = 0; l < 3; l++) {
                const double start = now();
                bp_conv_direct_weight_gradient(x, gOut, wg[l], bg[l], &g, t.cOut, 0, images, l);
                const double elapsed = now() - start;
                if (elapsed < best[l]) best[l] = elapsed;
            }
        }
        double largest = 0, difference = 0;
        for (long i = 0; i < nw; i++) {
            const double a = wg[1][i], d = fabs(a - (double)wg[2][i]);
            largest = fabs(a) > largest ? fabs(a) : largest;
            difference = d > difference ? d : difference;
        }
        const int agree = difference <= 1e-5 * largest;
        allSame = allSame && agree;
        char name[64];
        snprintf(name, sizeof name, "%ld, %ld×%ld → %ld, %ld×%ld", t.c, t.h, t.w, t.cOut, t.k, t.k);
        printf("%-26s %7ld %11.1f %11.1f %8.3f %11.1f %9s\n", name, images, best[1] * 1e6, best[2] * 1e6,
            best[2] / best[1], best[0] * 1e6, agree ? "yes" : "NO");
        free(x), free(gOut);
        for (int l = 0; l < 3; l++) free(wg[l]), free(bg[l]);
    }
    return allSame ? 0 : 1;
}
