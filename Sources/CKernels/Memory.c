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
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

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
