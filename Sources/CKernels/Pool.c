// A small pool of threads for loops whose iterations take tens of microseconds.
//
// A minibatch's matrix products take 30-80 µs. Handing half of one to a thread that sleeps costs
// about as much as it saves: waking a sleeping thread (a futex, and in a virtual machine often a
// halted virtual CPU) takes tens of microseconds. So the pool's threads, after finishing their
// part of a loop, keep watching for the next one for a short while (`SPIN_SECONDS`, 200 µs,
// yielding the processor as they go) before they go to sleep: the loops of one training step
// follow each other closely and find them awake, and an idle program stops using the processor
// a moment later. This is what OpenMP runtimes and OpenBLAS do, with a bounded wait.
//
//   caller                                   each helper thread
//   ------                                   ------------------
//   publish the loop (under the lock)        watch the generation counter (spin, then sleep)
//   take indices until none are left         join the published loop (under the lock)
//   wait until every index is done           take indices until none are left, then leave
//   withdraw the loop, wait for leavers
//
// One loop runs at a time. A call made while another loop runs (from a helper, from inside an
// iteration, or from a second thread of the program) runs its iterations on the calling thread.

#include "CKernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define PAUSE() _mm_pause()
#else
#define PAUSE() ((void)0)
#endif

enum { MAX_HELPERS = 63, YIELD_EVERY = 64 };

/// How long a helper watches for the next loop before it sleeps.
static const double SPIN_SECONDS = 200e-6;

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

typedef struct Loop {
    bp_iteration body;
    void *context;
    long count;
    /// Helpers allowed to join (threads - 1).
    int seats;
    _Atomic long next;
    _Atomic long done;
    _Atomic int joined;
} Loop;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int started;
    int sleepers;
    Loop *loop;
    _Atomic unsigned long generation;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0};

/// Whether this thread is inside a loop's iteration (a nested call then runs serially).
static _Thread_local int insideLoop = 0;

/// One call at a time publishes a loop; others run serially.
static pthread_mutex_t publishing = PTHREAD_MUTEX_INITIALIZER;

/// Takes and runs indices of `loop` until none are left.
static void work(Loop *loop) {
    insideLoop = 1;
    for (;;) {
        const long index = atomic_fetch_add_explicit(&loop->next, 1, memory_order_relaxed);
        if (index >= loop->count) break;
        loop->body(loop->context, index);
        atomic_fetch_add_explicit(&loop->done, 1, memory_order_release);
    }
    insideLoop = 0;
}

static void *helperMain(void *argument) {
    (void)argument;
    unsigned long seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
    for (;;) {
        // Watch for the next loop for a while, then sleep until one is published.
        const double start = seconds();
        long spins = 0;
        while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
            if (++spins % YIELD_EVERY != 0) {
                PAUSE();
                continue;
            }
            if (seconds() - start < SPIN_SECONDS) {
                sched_yield();
                continue;
            }
            pthread_mutex_lock(&pool.lock);
            pool.sleepers++;
            while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
                pthread_cond_wait(&pool.wake, &pool.lock);
            }
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
        }
        pthread_mutex_lock(&pool.lock);
        seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
        Loop *loop = pool.loop;
        if (loop && loop->seats > 0) {
            loop->seats--;
            atomic_fetch_add_explicit(&loop->joined, 1, memory_order_acq_rel);
        } else {
            loop = NULL;
        }
        pthread_mutex_unlock(&pool.lock);
        if (loop) {
            work(loop);
            atomic_fetch_sub_explicit(&loop->joined, 1, memory_order_release);
        }
    }
    return NULL;
}

/// Starts helpers until there are `wanted` (never fewer than before). Called under `publishing`.
static void startHelpers(int wanted) {
    if (wanted > MAX_HELPERS) wanted = MAX_HELPERS;
    while (pool.started < wanted) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attributes, helperMain, NULL);
        pthread_attr_destroy(&attributes);
        if (failed) break;  // fewer helpers: the loops still complete, on fewer threads
        pool.started++;
    }
}

void bp_parallel_for(long count, int threads, bp_iteration body, void *context) {
    if (count <= 0) return;
    if (threads <= 1 || count == 1 || insideLoop || pthread_mutex_trylock(&publishing) != 0) {
        const int outer = insideLoop;
        insideLoop = 1;
        for (long index = 0; index < count; index++) body(context, index);
        insideLoop = outer;
        return;
    }
    startHelpers(threads - 1);
    Loop loop = {body, context, count, threads - 1, 0, 0, 0};
    atomic_init(&loop.next, 0);
    atomic_init(&loop.done, 0);
    atomic_init(&loop.joined, 0);
    pthread_mutex_lock(&pool.lock);
    pool.loop = &loop;
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_acq_rel);
    if (pool.sleepers > 0) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    work(&loop);
    // The last indices run on helpers; if one lost its processor (a busy machine), let it back.
    for (long spins = 1; atomic_load_explicit(&loop.done, memory_order_acquire) < count; spins++) {
        PAUSE();
        if (spins % YIELD_EVERY == 0) sched_yield();
    }

    // Withdraw the loop; helpers that joined are leaving (no index is left for them).
    pthread_mutex_lock(&pool.lock);
    pool.loop = NULL;
    pthread_mutex_unlock(&pool.lock);
    for (long spins = 1; atomic_load_explicit(&loop.joined, memory_order_acquire) > 0; spins++) {
        PAUSE();
        if (spins % YIELD_EVERY == 0) sched_yield();
    }
    pthread_mutex_unlock(&publishing);
}
