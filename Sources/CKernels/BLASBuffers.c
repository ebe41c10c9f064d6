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

#include "CKernels.h"

#include <pthread.h>
#include <stdatomic.h>

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
        void *held[64];
        for (int slot = 0; slot < slots; slot++) held[slot] = blas_memory_alloc(0);
        for (int slot = 0; slot < slots; slot++) {
            if (held[slot] != NULL) blas_memory_free(held[slot]);
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
