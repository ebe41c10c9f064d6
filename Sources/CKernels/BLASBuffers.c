// Reserving OpenBLAS's work buffers while a failure can still be reported.
//
// OpenBLAS 0.3 gives every `sgemm` call a work buffer from a table of slots
// (`blas_memory_alloc` in its driver/others/memory.c). A slot is mapped (128 MiB with
// DYNAMIC_ARCH) the first time a call needs it and kept for the life of the process; when the
// mapping fails, OpenBLAS tries again, for ever. A process under a memory limit (`ulimit -v`)
// then spins at 100% of a core, and signals do not stop it: the thread never returns to Swift.
// OpenBLAS has no setting that turns this into an error, so Backprop maps the slots its own
// threads will use before the first product that needs them, after checking with a probe
// mapping of the same size that the memory is there, and reports a failure as running out of
// memory instead.
//
// A call takes the first slot not in use, so `n` threads calling at once use slots 0..<n:
// holding `n` buffers at once maps exactly those, and no later call maps another.
//
// The probe does not promise the mappings: memory can go between the two (OpenBLAS's own server
// threads map their buffers when they start, and a helper's sweep of `ulimit -v` found limits
// where the reservation then spun in OpenBLAS's retry loop, 1 run in 3). So the slots are mapped
// on a thread of their own, and a reservation that has not finished within `reserveSeconds` is
// taken for that loop and reported as running out of memory; the spinning thread is left to the
// process's end, which the report brings.

#include "CKernels.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#if defined(__linux__)
#include <sys/mman.h>

// Weak: resolved to OpenBLAS's functions when the program links it, else NULL (another BLAS,
// or none), and then there is nothing to reserve.
extern void *blas_memory_alloc(int procpos) __attribute__((weak));
extern void blas_memory_free(void *buffer) __attribute__((weak));
#endif

/// The most bytes one slot maps: OpenBLAS 0.3's largest BUFFER_SIZE (`32 << 22`, the x86-64
/// size with DYNAMIC_ARCH), a guard page and room for alignment.
static const unsigned long slotBytes = (128ul << 20) + (1ul << 20);

static atomic_int reservedSlots = 0;
static pthread_mutex_t reserveLock = PTHREAD_MUTEX_INITIALIZER;

#if defined(__linux__)
/// How long the slots' mappings may take: untouched mappings take microseconds, and OpenBLAS may
/// touch them (its warm-up), a fraction of a second on a loaded machine.
static const int reserveSeconds = 10;

/// One reservation's state, shared with its thread; left allocated when the thread spins.
struct Reservation {
    int slots;
    int done;
    pthread_mutex_t lock;
    pthread_cond_t finished;
};

/// Maps the slots by holding `slots` buffers at once, gives them back, and says so.
static void *mapSlots(void *argument) {
    struct Reservation *reservation = argument;
    void *held[64];
    for (int slot = 0; slot < reservation->slots; slot++) held[slot] = blas_memory_alloc(0);
    for (int slot = 0; slot < reservation->slots; slot++) {
        if (held[slot] != NULL) blas_memory_free(held[slot]);
    }
    pthread_mutex_lock(&reservation->lock);
    reservation->done = 1;
    pthread_cond_signal(&reservation->finished);
    pthread_mutex_unlock(&reservation->lock);
    return NULL;
}

/// Maps `slots` slots on a thread of its own within `reserveSeconds`: 1 when done, 0 when the
/// thread cannot start or has not finished by then (OpenBLAS retrying a mapping for ever).
static int mapSlotsWithin(int slots) {
    struct Reservation *reservation = calloc(1, sizeof *reservation);
    if (reservation == NULL) return 0;
    reservation->slots = slots;
    pthread_mutex_init(&reservation->lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&reservation->finished, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_attr_t threadAttributes;
    pthread_attr_init(&threadAttributes);
    pthread_attr_setstacksize(&threadAttributes, 1ul << 20);
    pthread_t thread;
    int started = pthread_create(&thread, &threadAttributes, mapSlots, reservation) == 0;
    pthread_attr_destroy(&threadAttributes);
    if (!started) {
        pthread_cond_destroy(&reservation->finished);
        pthread_mutex_destroy(&reservation->lock);
        free(reservation);
        return 0;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += reserveSeconds;
    pthread_mutex_lock(&reservation->lock);
    int waited = 0;
    while (!reservation->done && waited != ETIMEDOUT) {
        waited = pthread_cond_timedwait(&reservation->finished, &reservation->lock, &deadline);
    }
    int done = reservation->done;
    pthread_mutex_unlock(&reservation->lock);
    if (!done) {
        pthread_detach(thread);  // spinning: it and its state stay until the process ends
        return 0;
    }
    pthread_join(thread, NULL);
    pthread_cond_destroy(&reservation->finished);
    pthread_mutex_destroy(&reservation->lock);
    free(reservation);
    return 1;
}
#endif

int bp_blas_reserve_buffers(int slots) {
    if (atomic_load_explicit(&reservedSlots, memory_order_acquire) >= slots) return 1;
#if defined(__linux__)
    if (slots > 64) slots = 64;
    pthread_mutex_lock(&reserveLock);
    int reserved = atomic_load_explicit(&reservedSlots, memory_order_relaxed);
    if (reserved < slots && blas_memory_alloc != NULL && blas_memory_free != NULL) {
        // The probe asks for what the new slots will: the same kind of mapping, untouched, so
        // it costs address space (what ulimit -v limits) and commit charge, not memory.
        unsigned long bytes = (unsigned long)(slots - reserved) * slotBytes;
        void *probe = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (probe == MAP_FAILED) {
            pthread_mutex_unlock(&reserveLock);
            return 0;
        }
        munmap(probe, bytes);
        if (!mapSlotsWithin(slots)) {
            pthread_mutex_unlock(&reserveLock);
            return 0;
        }
    }
    atomic_store_explicit(&reservedSlots, slots, memory_order_release);
    pthread_mutex_unlock(&reserveLock);
#else
    atomic_store_explicit(&reservedSlots, slots, memory_order_release);
#endif
    return 1;
}

unsigned long bp_blas_buffer_bytes(int slots) {
    int reserved = atomic_load_explicit(&reservedSlots, memory_order_acquire);
    return slots > reserved ? (unsigned long)(slots - reserved) * slotBytes : 0;
}
