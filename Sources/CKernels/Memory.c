// What the kernels do when the system refuses them memory.
//
// A kernel's scratch (a product's packing buffer, a convolution's padded image) is allocated in C,
// often on one of the pool's helper threads, where there is no Swift error to throw and no way to
// go on without the memory. Rather than `abort()` (a trap and a backtrace, which `ulimit -v` made
// happen in CI), the kernels call `bp_out_of_memory`, which hands the request to the handler the
// Swift side installs: `Tensor.allocationFailed`, so that a product's buffer ends the program as a
// tensor's storage does (`backprop` prints one line and exits with status 1).
//
// Saying so takes memory too: the message is a Swift string, and a thread that has never
// allocated may need a new heap. Under `ulimit -v` that once failed on a pool helper whose packing
// buffer had been refused (Foundation's `String(format:)` crashed in `strlen` when its
// thread-specific data could not be had). So installing a handler sets aside a reserve of address
// space, and every report of a failure gives it back before building its message.

#include "CKernels.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>

static _Atomic(bp_out_of_memory_handler) handler = NULL;

/// The emergency reserve: mapped `PROT_NONE`, which counts against `ulimit -v` (the address
/// space) but touches no memory. 4 MiB: glibc's malloc, when its heap cannot grow, maps at least
/// 1 MiB at a time.
static _Atomic(void *) reserve = NULL;
static const size_t reserveBytes = 4 << 20;

void bp_set_out_of_memory_handler(bp_out_of_memory_handler newHandler) {
    atomic_store(&handler, newHandler);
    if (!newHandler || atomic_load(&reserve)) return;
    void *mapping = mmap(NULL, reserveBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mapping == MAP_FAILED) return;
    void *expected = NULL;
    if (!atomic_compare_exchange_strong(&reserve, &expected, mapping)) munmap(mapping, reserveBytes);
}

void bp_release_memory_reserve(void) {
    void *mapping = atomic_exchange(&reserve, NULL);
    if (mapping) munmap(mapping, reserveBytes);
}

void bp_out_of_memory(long bytes, const char *purpose) {
    bp_release_memory_reserve();
    bp_out_of_memory_handler current = atomic_load(&handler);
    if (current) current(bytes, purpose);
    // No handler (or one that returned, which it must not): say what failed, then stop.
    fprintf(stderr, "Backprop: could not allocate %ld bytes for %s\n", bytes, purpose);
    abort();
}

// Under a limit on the address space (`ulimit -v`), which of the program's allocations the
// system refuses first is a matter of timing: a tensor's storage (which ends the program with one
// line) or one of Swift's own small allocations (an array's 48 bytes, which traps with a
// backtrace). A gradient check of 4,000 layers under `ulimit -v 525000` ended either way, one run
// in three by the trap. So where the address space is limited, a tensor's allocation first asks
// for itself and `headroomBytes` more, in one `PROT_NONE` mapping unmapped at once: the tensor is
// refused while Swift still has that much to allocate from, and the program ends with its line.

/// The address space kept free for Swift's allocations between two tensors' (16 MiB).
static const size_t headroomBytes = 16 << 20;

/// 1 when the address space is limited (checked once), 0 when not, -1 before the check.
static _Atomic int limited = -1;

int bp_address_space_has_room(long bytes) {
    int known = atomic_load_explicit(&limited, memory_order_relaxed);
    if (known < 0) {
        struct rlimit limit;
        known = getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY;
        atomic_store_explicit(&limited, known, memory_order_relaxed);
    }
    if (!known) return 1;
    if (bytes < 0 || (size_t)bytes > SIZE_MAX - headroomBytes) return 0;
    void *probe = mmap(NULL, (size_t)bytes + headroomBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (probe == MAP_FAILED) return 0;
    munmap(probe, (size_t)bytes + headroomBytes);
    return 1;
}
