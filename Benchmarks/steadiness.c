// Is this a good minute to benchmark? On a shared virtual machine the speed of a core moves from
// second to second, and not the same way for all work: a loop of FMAs held in registers can run
// steadily while a matrix product whose operands live in the core's caches loses up to half its
// rate (other tenants' programs share the caches, not only the processors). Built and run by
// `Benchmarks/steadiness.sh [SECONDS [PROCESSORS]]` (BENCHMARKS.md, "Why the floor ratios stay near 2-3x").
//
// One thread per processor (pinned; the first PROCESSORS of them, default all), all at once, for
// SECONDS seconds (default 5): windows of about 10 ms alternate between the FMA loop of `backprop
// bench` (`bp_peak_fma_avx512`; the AVX2 one without AVX-512 or with BACKPROP_NO_AVX512 set) and
// `train`'s first product, `(128, 784) • (784, 256)`, with the package's kernel (`bp_gemm_*`),
// each thread on operands of its own (1.3 MB, within its L2 cache). For each processor it prints
// both rates (GFLOP/s) as the best window, the 90th and 50th and 10th percentiles, and the mean
// over the whole run; and the product's mean as a share of its best: near 1 on a quiet machine,
// below 0.8 when the products of this minute would run well below the floor's rate.
#define _GNU_SOURCE  // pthread_setaffinity_np
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "CKernels.h"
#include "CKernelsPeak.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int ascending(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

enum { ROWS = 128, DEPTH = 784, COLUMNS = 256, MAX_WINDOWS = 20000 };

static double seconds = 5;
static int wide = 0;  // AVX-512 (else AVX2)
/// The FMA loop and the product kernel of the instruction set chosen (`wide`).
static long (*fmaLoop)(long trips, float a, float b, float *accumulators);
static void (*gemm)(const BPGemm *g, long rowBegin, long rowEnd, long columnBegin, long columnEnd);

typedef struct {
    int cpu;
    double fma[MAX_WINDOWS], gemm[MAX_WINDOWS];
    int fmaCount, gemmCount;
    double fmaFlops, fmaTime, gemmFlops, gemmTime;
} Worker;

/// Runs windows of about 10 ms, alternating the two kinds of work, until `seconds` have passed.
static void *work(void *argument) {
    Worker *w = argument;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);

    float *a = aligned_alloc(64, sizeof(float) * ROWS * DEPTH);
    float *b = aligned_alloc(64, sizeof(float) * DEPTH * COLUMNS);
    float *c = aligned_alloc(64, sizeof(float) * ROWS * COLUMNS);
    if (!a || !b || !c) {
        fprintf(stderr, "steadiness: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < ROWS * DEPTH; i++) a[i] = (float)(i % 17) * 0.01f;
    for (long i = 0; i < DEPTH * COLUMNS; i++) b[i] = (float)(i % 13) * 0.01f;
    const BPGemm product = {ROWS, COLUMNS, DEPTH, a, DEPTH, 1, b, COLUMNS, 1, c, COLUMNS, NULL, 0, 0};
    const double productFlops = 2.0 * ROWS * DEPTH * COLUMNS;
    float accumulators[BP_PEAK_AVX512_ACCUMULATORS * BP_PEAK_AVX512_LANES];
    for (int i = 0; i < BP_PEAK_AVX512_ACCUMULATORS * BP_PEAK_AVX512_LANES; i++) accumulators[i] = 1;

    // Trips per FMA window and products per product window, from a first timing of each.
    long trips = 100000;
    double start = now();
    fmaLoop(trips, 1, 1, accumulators);
    trips = (long)(trips * 0.01 / (now() - start + 1e-9)) + 1;
    start = now();
    gemm(&product, 0, ROWS, 0, COLUMNS);
    const long products = (long)(0.01 / (now() - start + 1e-9)) + 1;

    const double end = now() + seconds;
    while (now() < end && w->fmaCount < MAX_WINDOWS && w->gemmCount < MAX_WINDOWS) {
        double t = now();
        const long lanes = fmaLoop(trips, 1, 1, accumulators);
        t = now() - t;
        w->fma[w->fmaCount++] = 2.0 * lanes / t / 1e9;
        w->fmaFlops += 2.0 * lanes;
        w->fmaTime += t;

        t = now();
        for (long i = 0; i < products; i++) gemm(&product, 0, ROWS, 0, COLUMNS);
        t = now() - t;
        w->gemm[w->gemmCount++] = productFlops * products / t / 1e9;
        w->gemmFlops += productFlops * products;
        w->gemmTime += t;
    }
    free(a);
    free(b);
    free(c);
    return NULL;
}

static void report(const char *name, double *rates, int count, double mean) {
    qsort(rates, count, sizeof *rates, ascending);
    printf("  %-7s best %6.1f  p90 %6.1f  p50 %6.1f  p10 %6.1f  mean %6.1f GFLOP/s (%d windows)\n", name,
        rates[count - 1], rates[count * 9 / 10], rates[count / 2], rates[count / 10], mean, count);
}

int main(int argc, char **argv) {
    if (argc > 1) seconds = atof(argv[1]);
    if (!(seconds > 0 && seconds <= 600)) {
        fprintf(stderr, "steadiness: SECONDS must be in (0, 600], found %s\n", argv[1]);
        return 2;
    }
    if (!bp_gemm_avx2_available()) {
        fprintf(stderr, "steadiness: this processor has no AVX2 and FMA\n");
        return 1;
    }
    wide = bp_gemm_avx512_available();  // (no when BACKPROP_NO_AVX512 is set)
    fmaLoop = wide ? bp_peak_fma_avx512 : bp_peak_fma_avx2;
    gemm = wide ? bp_gemm_avx512 : bp_gemm_avx2;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1) cpus = 1;
    if (cpus > 64) cpus = 64;
    if (argc > 2) {
        const long asked = atol(argv[2]);
        if (asked < 1 || asked > cpus) {
            fprintf(stderr, "steadiness: PROCESSORS must be in 1...%ld, found %s\n", cpus, argv[2]);
            return 2;
        }
        cpus = asked;
    }
    Worker *workers = calloc((size_t)cpus, sizeof *workers);
    pthread_t *threads = calloc((size_t)cpus, sizeof *threads);
    if (!workers || !threads) return 1;
    printf("%ld processors, %.0f s, %s; FMA loop and (%d, %d) • (%d, %d) in alternate windows of ~10 ms\n", cpus,
        seconds, wide ? "AVX-512" : "AVX2", ROWS, DEPTH, DEPTH, COLUMNS);
    for (long i = 0; i < cpus; i++) {
        workers[i].cpu = (int)i;
        pthread_create(&threads[i], NULL, work, &workers[i]);
    }
    for (long i = 0; i < cpus; i++) pthread_join(threads[i], NULL);
    for (long i = 0; i < cpus; i++) {
        Worker *w = &workers[i];
        if (w->fmaCount == 0 || w->gemmCount == 0) continue;
        printf("processor %d\n", w->cpu);
        const double fmaMean = w->fmaFlops / w->fmaTime / 1e9, gemmMean = w->gemmFlops / w->gemmTime / 1e9;
        report("FMA", w->fma, w->fmaCount, fmaMean);
        report("product", w->gemm, w->gemmCount, gemmMean);
        printf("  product mean / best: %.2f; product best / FMA best: %.2f\n", gemmMean / w->gemm[w->gemmCount - 1],
            w->gemm[w->gemmCount - 1] / w->fma[w->fmaCount - 1]);
    }
    free(workers);
    free(threads);
    return 0;
}
