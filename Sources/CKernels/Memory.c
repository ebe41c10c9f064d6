// What the kernels do when the system refuses them memory.
//
// A kernel's scratch (a product's packing buffer, a convolution's padded image) is allocated in C,
// often on one of the pool's helper threads, where there is no Swift error to throw and no way to
// go on without the memory. Rather than `abort()` (a trap and a backtrace, which `ulimit -v` made
// happen in CI), the kernels call `bp_out_of_memory`, which hands the request to the handler the
// Swift side installs: `Tensor.allocationFailed`, so that a product's buffer ends the program as a
// tensor's storage does (`backprop` prints one line and exits with status 1).

#include "CKernels.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static _Atomic(bp_out_of_memory_handler) handler = NULL;

void bp_set_out_of_memory_handler(bp_out_of_memory_handler newHandler) { atomic_store(&handler, newHandler); }

void bp_out_of_memory(long bytes, const char *purpose) {
    bp_out_of_memory_handler current = atomic_load(&handler);
    if (current) current(bytes, purpose);
    // No handler (or one that returned, which it must not): say what failed, then stop.
    fprintf(stderr, "Backprop: could not allocate %ld bytes for %s\n", bytes, purpose);
    abort();
}
