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
//   withdraw the loop (under the lock)       take indices until none are left
//   wait for the helpers inside it to leave  leave (under the lock; wake the caller if it sleeps)
//   (watch 50 µs, then sleep)
//
// One loop runs at a time. A call made while another loop runs (from a helper, from inside an
// iteration, or from a second thread of the program) runs its iterations on the calling thread.
//
// Besides, one background loop at a time (`bp_background_start`): work the caller will need later
// (the next minibatch's rows), whose iterations a helper runs while it has no loop to join, one
// iteration at a time, so that a loop published meanwhile waits for at most one iteration. The
// caller finishes it (`bp_background_finish`): it runs the iterations no helper took and waits
// for those under way, so the work gets done whether or not a helper had a moment for it.

#include "CKernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
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

/// How long the caller watches for its helpers to finish before it sleeps until they do.
static const double CALLER_SPIN_SECONDS = 50e-6;

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
    /// Helpers inside the loop (changed under `pool.lock`; read without it to spin).
    _Atomic int joined;
    /// Whether the caller sleeps on `pool.finished` until `joined` is 0 (under `pool.lock`).
    int waiting;
} Loop;

static struct {
    pthread_mutex_t lock;
    /// Helpers sleep on it until a loop is published.
    pthread_cond_t wake;
    /// The caller sleeps on it until the last helper has left its loop.
    pthread_cond_t finished;
    int started;
    int sleepers;
    Loop *loop;
    _Atomic unsigned long generation;
    /// The background loop, while it has iterations no helper has taken (under `lock`), and
    /// whether there is one (read without the lock, to spin).
    Loop *background;
    _Atomic int backgroundPending;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0, NULL, 0};

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
    }
    insideLoop = 0;
}

/// Leaves `loop` (whose `joined` this helper incremented): the decrement is the last touch of
/// `loop`, which the caller may free once `joined` is 0. `waiting` is read first, under the lock
/// under which the caller sets it: if the caller sleeps it set `waiting` before this; if it has
/// not yet, it will see `joined` at 0 under the lock and not sleep. (The thread sanitizer found the
/// read that used to follow the decrement.)
static void leave(Loop *loop) {
    pthread_mutex_lock(&pool.lock);
    const int callerSleeps = loop->waiting;
    if (atomic_fetch_sub_explicit(&loop->joined, 1, memory_order_acq_rel) == 1 && callerSleeps) {
        pthread_cond_broadcast(&pool.finished);
    }
    pthread_mutex_unlock(&pool.lock);
}

/// Runs one iteration of the background loop, if there is one with iterations left; returns
/// whether it did. Withdraws the loop once every iteration is taken.
static int runBackgroundIteration(void) {
    pthread_mutex_lock(&pool.lock);
    Loop *task = pool.background;
    if (task) atomic_fetch_add_explicit(&task->joined, 1, memory_order_acq_rel);
    pthread_mutex_unlock(&pool.lock);
    if (!task) return 0;
    const long index = atomic_fetch_add_explicit(&task->next, 1, memory_order_relaxed);
    const int runs = index < task->count;
    if (runs) {
        insideLoop = 1;
        task->body(task->context, index);
        insideLoop = 0;
    } else {
        pthread_mutex_lock(&pool.lock);
        if (pool.background == task) {
            pool.background = NULL;
            atomic_store_explicit(&pool.backgroundPending, 0, memory_order_release);
        }
        pthread_mutex_unlock(&pool.lock);
    }
    leave(task);  // (the last touch of `task`)
    return runs;
}

/// A helper's loop. `argument` is the generation when it was started, before the loop that
/// started it was published: the helper joins that loop even if it first looks after the publish.
static void *helperMain(void *argument) {
    unsigned long seen = (unsigned long)(uintptr_t)argument;
    for (;;) {
        // Watch for the next loop for a while (running background iterations meanwhile), then
        // sleep until a loop or background work is published.
        double start = seconds();
        long spins = 0;
        while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
            if (atomic_load_explicit(&pool.backgroundPending, memory_order_acquire) && runBackgroundIteration()) {
                start = seconds();
                continue;
            }
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
            while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen
                && !atomic_load_explicit(&pool.backgroundPending, memory_order_acquire)) {
                pthread_cond_wait(&pool.wake, &pool.lock);
            }
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
            start = seconds();
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
            // Once `joined` is 0 the caller may return (its spin does not take the lock), and
            // `loop`, on its stack, is gone.
            leave(loop);
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
        const unsigned long generation = atomic_load_explicit(&pool.generation, memory_order_acquire);
        const int failed = pthread_create(&thread, &attributes, helperMain, (void *)(uintptr_t)generation);
        pthread_attr_destroy(&attributes);
        if (failed) break;  // fewer helpers: the loops still complete, on fewer threads
        pool.started++;
    }
}

// How many loops were handed to the helpers, and how many of those found a helper asleep and woke
// it with the condition variable (issue 16's breakdown of a step: what the pool costs).
static _Atomic long dispatchCount = 0;
static _Atomic long wakeCount = 0;
// And how long their callers waited for the helpers after running out of indices (nanoseconds):
// the price of a helper that joined late or took a slower piece.
static _Atomic long waitNanoseconds = 0;

long bp_parallel_dispatch_count(void) { return atomic_load_explicit(&dispatchCount, memory_order_relaxed); }

long bp_parallel_wake_count(void) { return atomic_load_explicit(&wakeCount, memory_order_relaxed); }

long bp_parallel_wait_nanoseconds(void) { return atomic_load_explicit(&waitNanoseconds, memory_order_relaxed); }

/// Waits until no helper is inside `loop` (its `joined` is 0): watches briefly, then sleeps. On a
/// busy machine a helper that lost its processor gets it back sooner if the caller does not spin
/// for it.
static void waitForHelpers(Loop *loop) {
    if (atomic_load_explicit(&loop->joined, memory_order_acquire) == 0) return;
    const double start = seconds();
    for (long spins = 1; atomic_load_explicit(&loop->joined, memory_order_acquire) > 0; spins++) {
        if (spins % YIELD_EVERY != 0) {
            PAUSE();
            continue;
        }
        if (seconds() - start < CALLER_SPIN_SECONDS) continue;
        pthread_mutex_lock(&pool.lock);
        loop->waiting = 1;
        while (atomic_load_explicit(&loop->joined, memory_order_acquire) > 0) {
            pthread_cond_wait(&pool.finished, &pool.lock);
        }
        pthread_mutex_unlock(&pool.lock);
        break;
    }
    atomic_fetch_add_explicit(&waitNanoseconds, (long)((seconds() - start) * 1e9), memory_order_relaxed);
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
    atomic_init(&loop.joined, 0);
    pthread_mutex_lock(&pool.lock);
    pool.loop = &loop;
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_acq_rel);
    if (pool.sleepers > 0) {
        pthread_cond_broadcast(&pool.wake);
        atomic_fetch_add_explicit(&wakeCount, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&pool.lock);
    atomic_fetch_add_explicit(&dispatchCount, 1, memory_order_relaxed);

    work(&loop);
    // Every index is taken. Withdraw the loop (no helper joins from now on), then wait for the
    // helpers inside it: a helper leaves once its last index is done. Watch briefly, then sleep:
    // on a busy machine a helper that lost its processor gets it back sooner if the caller
    // does not spin for it.
    pthread_mutex_lock(&pool.lock);
    pool.loop = NULL;
    pthread_mutex_unlock(&pool.lock);
    waitForHelpers(&loop);
    pthread_mutex_unlock(&publishing);
}

void *bp_background_start(long count, int threads, bp_iteration body, void *context) {
    Loop *task = NULL;
    if (count > 0 && threads > 1 && !insideLoop) task = malloc(sizeof(Loop));
    // (While another thread's loop is being published or run, the helpers are busy anyway.)
    int helpers = 0;
    if (task && pthread_mutex_trylock(&publishing) == 0) {
        startHelpers(threads - 1);
        helpers = pool.started;
        pthread_mutex_unlock(&publishing);
    }
    if (task) {
        *task = (Loop){body, context, count, 0, 0, 0, 0};
        atomic_init(&task->next, 0);
        atomic_init(&task->joined, 0);
        pthread_mutex_lock(&pool.lock);
        if (helpers > 0 && !pool.background) {
            pool.background = task;
            atomic_store_explicit(&pool.backgroundPending, 1, memory_order_release);
            if (pool.sleepers > 0) pthread_cond_broadcast(&pool.wake);
        } else {
            free(task);
            task = NULL;
        }
        pthread_mutex_unlock(&pool.lock);
    }
    if (!task) {
        for (long index = 0; index < count; index++) body(context, index);
    }
    return task;
}

void bp_background_finish(void *handle) {
    if (!handle) return;
    Loop *task = handle;
    pthread_mutex_lock(&pool.lock);
    if (pool.background == task) {
        pool.background = NULL;
        atomic_store_explicit(&pool.backgroundPending, 0, memory_order_release);
    }
    pthread_mutex_unlock(&pool.lock);
    // No helper joins from now on: run what is left, then wait for the helpers inside.
    for (;;) {
        const long index = atomic_fetch_add_explicit(&task->next, 1, memory_order_relaxed);
        if (index >= task->count) break;
        task->body(task->context, index);
    }
    waitForHelpers(task);
    free(task);
}

// MARK: - Thread-local buffers

/// One key per kind of kept buffer, whose destructor frees a thread's buffer when the thread ends.
static pthread_key_t bufferKeys[BP_THREAD_BUFFER_KINDS];
static pthread_once_t bufferKeysOnce = PTHREAD_ONCE_INIT;
static void makeBufferKeys(void) {
    for (int kind = 0; kind < BP_THREAD_BUFFER_KINDS; kind++) pthread_key_create(&bufferKeys[kind], free);
}

void bp_free_at_thread_exit(int kind, void *buffer) {
    // A kept buffer lives in a `_Thread_local` pointer, which dies with its thread: without this,
    // a thread that ends (a dispatch worker, a test's task) would leak it. A buffer replaced by a
    // larger one was freed by its owner; the key then holds the new one.
    pthread_once(&bufferKeysOnce, makeBufferKeys);
    pthread_setspecific(bufferKeys[kind], buffer);
}
