// Two versions of the matrix-product kernel (`Sources/CKernels/Gemm.c`) timed in one process,
// interleaved round after round, on one core: the way to compare a kernel change on a machine
// whose speed drifts from minute to minute (BENCHMARKS.md, "Prefetching A's rows inside the
// tile"). Built and run by `Benchmarks/gemm_versions.sh REV`, which links the working tree's
// `Gemm.c` as `bp_gemm_*` and revision REV's as `old_bp_gemm_*`.
//
// For each shape: the best time of each version over the rounds, its GFLOP/s, and the number of
// elements of C whose bits differ between the two (0 unless a change meant to alter the sums).
// The shapes are the seed's (its `w1.g` through `bp_gemm_tn_*`, in the pieces `•` uses), the
// minibatch's and the MLP's (64 rows, forward and backward; the last layers' 10 columns are a
// partial panel) and `train`'s (128 rows); the last ones are timed with B written by a
// thread on the second processor before each call ("B from core 2"), as in training, where the
// other core's optimizer step has just updated the weights. (Evicting B with clflush instead
// models memory, not the other core's cache.) The last ones of all follow, before each call, a pass
// on this core over 3.8 MB ("after a 3.8 MB pass"), as the MLP's products follow Adam's update of
// `w`, `w.g`, `m` and `v` of its three layers, which pushes B and A out of L2.
#define _GNU_SOURCE  // pthread_setaffinity_np
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "CKernels.h"

void old_bp_gemm_avx512(const BPGemm *g, long rowBegin, long rowEnd, long columnBegin, long columnEnd);
void old_bp_gemm_avx2(const BPGemm *g, long rowBegin, long rowEnd, long columnBegin, long columnEnd);
void old_bp_gemm_tn_avx512(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt);
void old_bp_gemm_tn_avx2(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt);

typedef void (*Kernel)(const BPGemm *, long, long, long, long);
typedef void (*TransposedKernel)(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/// Whether `timed` has another core write B before each call (`otherCoreB`), as when the other
/// core's optimizer step has just updated the weights between a minibatch's products: B's lines
/// are then modified in that core's cache, not in this one's.
static int otherCoreB = 0;

/// The writer on the other core: each time `request` goes up, it stores every line of `target`
/// again (the same values) and sets `done` to `request`.
static struct {
    _Atomic long request, done;
    float *_Atomic target;
    _Atomic long floats;
} writer;

static void *writerMain(void *argument) {
    (void)argument;
    long seen = 0;
    for (;;) {
        long wanted;
        while ((wanted = atomic_load_explicit(&writer.request, memory_order_acquire)) == seen) _mm_pause();
        if (wanted < 0) return NULL;
        volatile float *b = atomic_load(&writer.target);
        const long floats = atomic_load(&writer.floats);
        for (long i = 0; i < floats; i += 16) b[i] = b[i];
        seen = wanted;
        atomic_store_explicit(&writer.done, wanted, memory_order_release);
    }
}

/// Has the writer thread store every line of B, and waits until it has.
static void writeBOnOtherCore(const BPGemm *g) {
    atomic_store(&writer.target, (float *)g->b);
    atomic_store(&writer.floats, g->k * g->n);
    const long request = atomic_load(&writer.request) + 1;
    atomic_store_explicit(&writer.request, request, memory_order_release);
    while (atomic_load_explicit(&writer.done, memory_order_acquire) != request) _mm_pause();
}

/// Floats that `timed` reads and writes on this core before each call, when `passFloats` is not 0:
/// the traffic of an optimizer step between two products (Adam's four arrays of the MLP's 235,146
/// parameters, 3.8 MB).
static long passFloats = 0;
static float *passBuffer = NULL;

/// Reads and adds to every float of `passBuffer`, as an elementwise update does.
static void passOverBuffer(void) {
    for (long i = 0; i < passFloats; i++) passBuffer[i] = passBuffer[i] * 0.5f + 1.0f;
}

/// The best of 2 timings of `repeats` calls of `kernel` on the whole of `g`, in seconds per call.
static double timed(Kernel kernel, const BPGemm *g, int repeats) {
    double best = 1e30;
    for (int trial = 0; trial < 2; trial++) {
        double seconds = 0;
        if (otherCoreB || passFloats) {
            for (int i = 0; i < repeats; i++) {
                if (otherCoreB) writeBOnOtherCore(g);
                if (passFloats) passOverBuffer();
                const double start = now();
                kernel(g, 0, g->m, 0, g->n);
                seconds += now() - start;
            }
        } else {
            const double start = now();
            for (int i = 0; i < repeats; i++) kernel(g, 0, g->m, 0, g->n);
            seconds = now() - start;
        }
        seconds /= repeats;
        if (seconds < best) best = seconds;
    }
    return best;
}

/// One line of the comparison: each version's best time (`best[0]` old, `best[1]` new, in seconds)
/// and GFLOP/s for `flops`, their ratio, and the elements whose bits differ.
static void report(const char *name, double flops, const double best[2], long differing) {
    printf("%-36s old %10.1f us %6.1f GFLOP/s   new %10.1f us %6.1f GFLOP/s   new/old %.3f   differing %ld\n", name,
        best[0] * 1e6, flops / best[0] * 1e-9, best[1] * 1e6, flops / best[1] * 1e-9, best[1] / best[0], differing);
}

/// How `compare`'s operands lie: both row-major; B = Wᵀ for a row-major W (n, k) (the seed's
/// `out.g • w1.t()`); or A = Xᵀ for a row-major X (k, m) (a weight's gradient, `inp.t() • out.g`).
enum { PLAIN = 0, TRANSPOSED_B = 1, TRANSPOSED_A = 2 };

/// `C (m, n) = A (m, k) • B (k, n)`, its operands laid out as `layout` says. Returns 0, or 1 when
/// memory runs out.
static int compare(const char *name, long m, long n, long k, int layout, int streaming, int repeats,
    Kernel oldKernel, Kernel newKernel, int rounds)
{
    float *a = aligned_alloc(64, (size_t)(m * k) * sizeof(float));
    float *b = aligned_alloc(64, (size_t)(k * n) * sizeof(float));
    float *c = aligned_alloc(64, (size_t)(m * n) * sizeof(float));
    float *reference = aligned_alloc(64, (size_t)(m * n) * sizeof(float));
    if (!a || !b || !c || !reference) {
        fprintf(stderr, "gemm_versions: could not allocate the operands of %s\n", name);
        free(a), free(b), free(c), free(reference);
        return 1;
    }
    for (long i = 0; i < m * k; i++) a[i] = (float)(i % 7) * 0.1f - 0.3f;
    for (long i = 0; i < k * n; i++) b[i] = (float)(i % 5) * 0.1f - 0.2f;
    const int transposedA = layout == TRANSPOSED_A, transposedB = layout == TRANSPOSED_B;
    const BPGemm g = {m, n, k, a, transposedA ? 1 : k, transposedA ? m : 1, b, transposedB ? 1 : n, transposedB ? k : 1,
        c, n, NULL, 0, streaming};
    double best[2] = {1e30, 1e30};
    for (int round = 0; round < rounds; round++) {
        const double before = timed(oldKernel, &g, repeats), after = timed(newKernel, &g, repeats);
        if (before < best[0]) best[0] = before;
        if (after < best[1]) best[1] = after;
    }
    oldKernel(&g, 0, m, 0, n);
    for (long i = 0; i < m * n; i++) reference[i] = c[i];
    newKernel(&g, 0, m, 0, n);
    long differing = 0;
    for (long i = 0; i < m * n; i++) differing += reference[i] != c[i];
    report(name, 2.0 * (double)m * (double)n * (double)k, best, differing);
    free(a), free(b), free(c), free(reference);
    return 0;
}

/// The seed's `w1.g = xᵀ • out.g`, `(784, 50000) • (50000, 50)`, as `•` computes it
/// (`MatMul+Skinny.swift`, `transposedDepthGemm`): `bp_gemm_tn_*` on pieces of 2,048 rows of x, each
/// into its own copy of `Cᵀ`, the whole of x read from memory once per call. Compares every
/// piece's `Cᵀ`. Returns 0, or 1 when memory runs out.
static int compareTransposed(TransposedKernel oldKernel, TransposedKernel newKernel, int rounds) {
    const long m = 784, n = 50, k = 50000, piece = 2048, pieces = (k + piece - 1) / piece;
    const long ldt = bp_gemm_tn_columns(m), pieceSize = bp_gemm_tn_rows(n) * ldt;
    float *x = aligned_alloc(64, (size_t)(k * m) * sizeof(float));
    float *g = aligned_alloc(64, (size_t)(k * n) * sizeof(float));
    float *t[2] = {aligned_alloc(64, (size_t)(pieces * pieceSize) * sizeof(float)),
        aligned_alloc(64, (size_t)(pieces * pieceSize) * sizeof(float))};
    if (!x || !g || !t[0] || !t[1]) {
        fprintf(stderr, "gemm_versions: could not allocate the operands of the seed's w1.g\n");
        free(x), free(g), free(t[0]), free(t[1]);
        return 1;
    }
    for (long i = 0; i < k * m; i++) x[i] = (float)(i % 7) * 0.1f - 0.3f;
    for (long i = 0; i < k * n; i++) g[i] = (float)(i % 5) * 0.1f - 0.2f;
    const TransposedKernel kernels[2] = {oldKernel, newKernel};
    double best[2] = {1e30, 1e30};
    for (int round = 0; round < rounds; round++) {
        for (int version = 0; version < 2; version++) {
            const double start = now();
            for (long p = 0; p < pieces; p++) {
                const long begin = p * piece, depth = k - begin < piece ? k - begin : piece;
                kernels[version](m, n, depth, x + begin * m, m, g + begin * n, n, 1, t[version] + p * pieceSize, ldt);
            }
            const double seconds = now() - start;
            if (seconds < best[version]) best[version] = seconds;
        }
    }
    long differing = 0;
    for (long i = 0; i < pieces * pieceSize; i++) differing += t[0][i] != t[1][i];
    report("seed x.t() • out.g (784x50000x50)", 2.0 * (double)m * (double)n * (double)k, best, differing);
    free(x), free(g), free(t[0]), free(t[1]);
    return 0;
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 5;
    int failed = 0;
    if (!bp_gemm_avx2_available()) {
        fprintf(stderr, "gemm_versions: this processor has no AVX2 and FMA: nothing to compare\n");
        return 1;
    }
    const int wide = bp_gemm_avx512_available();
    // This thread on the first processor, the writer of `otherCoreB` on the second (when there is
    // one; otherwise the scheduler places them).
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus);
    pthread_t writerThread;
    if (pthread_create(&writerThread, NULL, writerMain, NULL) != 0) {
        fprintf(stderr, "gemm_versions: could not start the writer thread\n");
        return 1;
    }
    CPU_ZERO(&cpus);
    CPU_SET(1, &cpus);
    pthread_setaffinity_np(writerThread, sizeof cpus, &cpus);
    for (int set = wide ? 0 : 1; set < 2; set++) {
        const Kernel oldKernel = set == 0 ? old_bp_gemm_avx512 : old_bp_gemm_avx2;
        const Kernel newKernel = set == 0 ? bp_gemm_avx512 : bp_gemm_avx2;
        printf("%s, one core, best of %d interleaved rounds\n", set == 0 ? "AVX-512" : "AVX2", rounds);
        failed |= compare("seed x • w1 (50000x784x50)", 50000, 50, 784, 0, 0, 2, oldKernel, newKernel, rounds);
        failed |= compare("seed out.g • w1.t() (50000x50x784)", 50000, 784, 50, TRANSPOSED_B, 1, 2, oldKernel,
            newKernel, rounds);
        failed |= compareTransposed(set == 0 ? old_bp_gemm_tn_avx512 : old_bp_gemm_tn_avx2,
            set == 0 ? bp_gemm_tn_avx512 : bp_gemm_tn_avx2, rounds);
        failed |= compare("A in L3 (3000x784x48)", 3000, 48, 784, 0, 0, 20, oldKernel, newKernel, rounds);
        failed |= compare("minibatch (64x784x50)", 64, 50, 784, 0, 0, 2000, oldKernel, newKernel, rounds);
        failed |= compare("minibatch (64x784x256)", 64, 256, 784, 0, 0, 500, oldKernel, newKernel, rounds);
        failed |= compare("minibatch (64x256x128)", 64, 128, 256, 0, 0, 2000, oldKernel, newKernel, rounds);
        failed |= compare("minibatch w1.g (784x64x50, At)", 784, 50, 64, TRANSPOSED_A, 0, 2000, oldKernel, newKernel,
            rounds);
        failed |= compare("minibatch w1.g half (392x64x50, At)", 392, 50, 64, TRANSPOSED_A, 0, 4000, oldKernel,
            newKernel, rounds);
        failed |= compare("mlp w1.g (784x64x256, At)", 784, 256, 64, TRANSPOSED_A, 0, 400, oldKernel, newKernel,
            rounds);
        failed |= compare("mlp h2 inp.g (64x128x256, Bt)", 64, 256, 128, TRANSPOSED_B, 0, 2000, oldKernel, newKernel,
            rounds);
        failed |= compare("mlp h2 w.g (256x64x128, At)", 256, 128, 64, TRANSPOSED_A, 0, 2000, oldKernel, newKernel,
            rounds);
        failed |= compare("minibatch last w.g (50x64x10, At)", 50, 10, 64, TRANSPOSED_A, 0, 5000, oldKernel,
            newKernel, rounds);
        failed |= compare("mlp last w.g (128x64x10, At)", 128, 10, 64, TRANSPOSED_A, 0, 5000, oldKernel, newKernel,
            rounds);
        failed |= compare("minibatch last (64x50x10)", 64, 10, 50, 0, 0, 5000, oldKernel, newKernel, rounds);
        failed |= compare("mlp last (64x128x10)", 64, 10, 128, 0, 0, 5000, oldKernel, newKernel, rounds);
        failed |= compare("odd widths (64x100x37)", 64, 37, 100, 0, 0, 2000, oldKernel, newKernel, rounds);
        failed |= compare("train batch (128x784x256)", 128, 256, 784, 0, 0, 250, oldKernel, newKernel, rounds);
        failed |= compare("train batch (128x784x128)", 128, 128, 784, 0, 0, 500, oldKernel, newKernel, rounds);
        failed |= compare("train batch (128x256x128)", 128, 128, 256, 0, 0, 1000, oldKernel, newKernel, rounds);
        failed |= compare("train batch inp.g (128x128x256, Bt)", 128, 256, 128, TRANSPOSED_B, 0, 1000, oldKernel,
            newKernel, rounds);
        failed |= compare("train batch w1.g (784x128x256, At)", 784, 256, 128, TRANSPOSED_A, 0, 200, oldKernel,
            newKernel, rounds);
        failed |= compare("train batch w1.g half (392x128x256, At)", 392, 256, 128, TRANSPOSED_A, 0, 400, oldKernel,
            newKernel, rounds);
        otherCoreB = 1;
        failed |= compare("B from core 2 (128x784x256)", 128, 256, 784, 0, 0, 100, oldKernel, newKernel, rounds);
        failed |= compare("B from core 2 (128x784x128)", 128, 128, 784, 0, 0, 200, oldKernel, newKernel, rounds);
        failed |= compare("B from core 2 (128x256x128)", 128, 128, 256, 0, 0, 400, oldKernel, newKernel, rounds);
        failed |= compare("B from core 2 (64x784x128)", 64, 128, 784, 0, 0, 400, oldKernel, newKernel, rounds);
        otherCoreB = 0;
        passFloats = 4 * 235146;
        passBuffer = calloc((size_t)passFloats, sizeof(float));
        if (!passBuffer) {
            fprintf(stderr, "gemm_versions: could not allocate the 3.8 MB pass\n");
            return 1;
        }
        failed |= compare("after a 3.8 MB pass (64x784x256)", 64, 256, 784, 0, 0, 200, oldKernel, newKernel, rounds);
        failed |= compare("after a 3.8 MB pass (784x64x256, At)", 784, 256, 64, TRANSPOSED_A, 0, 200, oldKernel,
            newKernel, rounds);
        failed |= compare("after a 3.8 MB pass (64x256x128)", 64, 128, 256, 0, 0, 400, oldKernel, newKernel, rounds);
        free(passBuffer);
        passBuffer = NULL;
        passFloats = 0;
    }
    return failed;
}
