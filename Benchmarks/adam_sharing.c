// Adam's update (`bp_adam_update`, Sources/CKernels/Optimizers.c) on half of the MLP's first weight
// matrix (392 × 256 of 784 × 256), timed where its memory was last touched: what the optimizer's
// time in the MLP epoch is made of. Built and run by `Benchmarks/adam_sharing.sh`.
//
// On one core (the first processor), best of 200 calls each:
// - hot:           w, m, v and g in this core's caches (the update's own speed);
// - from L3:       after a pass over 8 MB of other memory, which pushes them out of L2;
// - g written:     after the second processor wrote g (as its half of the product `w.g` does);
// - w read:        after the second processor read w (as its half of the next forward product
//                  does, when that product is cut by columns: the MLP's first layer).
// Then on both cores at once, each updating its half of the whole matrix:
// - row halves:    rows 0..<392 and 392..<784, each one stretch of memory;
// - column halves: columns 0..<128 and 128..<256 of every row, 784 calls of 128 values each.
//
// On Zen 4 (2026-12-04): hot 28 µs, from L3 28, g written by the other core 28, w read by it
// 87-110; row halves 28-31, column halves 95-108. The update does not wait for its arithmetic or
// for memory, but for writing lines that the other core holds a copy of: each store must first
// take the line away. Column halves do it to each other, since each core's prefetcher runs ahead
// into the other's half of every row (one core alone on its column half: 32 µs).
#define _GNU_SOURCE  // pthread_setaffinity_np
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "CKernels.h"

enum { ROWS = 784, COLUMNS = 256, CALLS = 200, EVICT_BYTES = 8 << 20 };

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float *w, *m, *v, *g;
static const BPAdamStep step = {0.9f, 0.999f, 0.1f, 0.001f, 1 - 1e-5f, 0.001f / 0.19f, 1.0f / 0.99f, 1e-8f};

/// What the second processor does when `request` goes up: 1 writes g's first half, 4 reads w's,
/// 2 and 3 update its row or column half; then it sets `done` to `request`.
static _Atomic long request, done;
static _Atomic int task;
static volatile float sink;

static void pin(int processor) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(processor, &cpus);
    pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus);
}

/// Half `half` (0 or 1) of the matrix: rows (`byColumns` 0) or columns (1).
static void updateHalf(int half, int byColumns) {
    if (!byColumns) {
        const long count = ROWS * COLUMNS / 2, start = half * count;
        bp_adam_update(w + start, m + start, v + start, g + start, count, &step);
        return;
    }
    for (long r = 0; r < ROWS; r++) {
        const long start = r * COLUMNS + half * (COLUMNS / 2);
        bp_adam_update(w + start, m + start, v + start, g + start, COLUMNS / 2, &step);
    }
}

static void *second(void *argument) {
    (void)argument;
    pin(1);
    long seen = 0;
    for (;;) {
        long wanted;
        while ((wanted = atomic_load(&request)) == seen) _mm_pause();
        seen = wanted;
        const long count = ROWS * COLUMNS / 2;
        if (atomic_load(&task) == 1) {
            for (long i = 0; i < count; i++) g[i] = g[i] * 1.0f;
        } else if (atomic_load(&task) == 4) {
            float total = 0;
            for (long i = 0; i < count; i += 16) total += w[i];
            sink = total;
        } else {
            updateHalf(1, atomic_load(&task) == 3);
        }
        atomic_store(&done, wanted);
    }
    return NULL;
}

/// Runs `task` on the second processor and waits for it.
static void onSecond(int which) {
    atomic_store(&task, which);
    const long wanted = atomic_fetch_add(&request, 1) + 1;
    while (atomic_load(&done) != wanted) _mm_pause();
}

int main(void) {
    pin(0);
    const long count = ROWS * COLUMNS;
    w = aligned_alloc(64, count * 4), m = aligned_alloc(64, count * 4);
    v = aligned_alloc(64, count * 4), g = aligned_alloc(64, count * 4);
    char *other = malloc(EVICT_BYTES);
    if (!w || !m || !v || !g || !other) return 1;
    memset(other, 1, EVICT_BYTES);
    for (long i = 0; i < count; i++) {
        w[i] = 0.01f * (float)(i % 97), m[i] = 0, v[i] = 0, g[i] = 0.001f * (float)(i % 89) - 0.04f;
    }
    pthread_t thread;
    if (pthread_create(&thread, NULL, second, NULL) != 0) return 1;
    const char *names[] = {"hot", "from L3", "g written by the other core", "w read by the other core"};
    for (int where = 0; where < 4; where++) {
        double best = 1e9;
        for (int call = 0; call < CALLS; call++) {
            if (where == 1) {
                for (long i = 0; i < EVICT_BYTES; i += 64) other[i]++;
            }
            if (where >= 2) onSecond(where == 2 ? 1 : 4);
            const double start = now();
            updateHalf(0, 0);
            const double seconds = now() - start;
            if (seconds < best) best = seconds;
        }
        printf("one core, half the matrix (%ld values), %-28s %6.1f us\n", count / 2, names[where], best * 1e6);
    }
    for (int byColumns = 0; byColumns < 2; byColumns++) {
        double best = 1e9;
        for (int call = 0; call < CALLS; call++) {
            atomic_store(&task, 2 + byColumns);
            const double start = now();
            const long wanted = atomic_fetch_add(&request, 1) + 1;
            updateHalf(0, byColumns);
            while (atomic_load(&done) != wanted) _mm_pause();
            const double seconds = now() - start;
            if (seconds < best) best = seconds;
        }
        printf("both cores, each its %s half of the matrix:         %6.1f us\n", byColumns ? "column" : "row   ",
            best * 1e6);
    }
    return 0;
}
