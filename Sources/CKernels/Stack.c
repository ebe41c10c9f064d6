// A stack for the command, whatever `ulimit -s` says.
//
// The main thread's stack is bounded by RLIMIT_STACK, and glibc gives the threads it creates
// later (the pool's helpers, Dispatch's workers) stacks of that size too. Under `ulimit -s 64`
// `backprop train` overflowed its stack (SIGSEGV). A thread's stack is an ordinary mapping that
// the limit does not bound: so under a small limit the command runs on a thread of its own with
// a stack of the size asked, and every thread created after gets that size by default.

#define _GNU_SOURCE
#include "CKernels.h"

#include <pthread.h>
#include <sys/resource.h>

int bp_stack_limit_below(long bytes) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_STACK, &limit) != 0) return 0;
    return limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < (rlim_t)bytes;
}

typedef struct StackCall {
    void (*body)(void *);
    void *context;
} StackCall;

static void *callOnStack(void *argument) {
    const StackCall *call = argument;
    call->body(call->context);
    return NULL;
}

int bp_run_on_stack(long bytes, void (*body)(void *), void *context) {
    pthread_attr_t attributes;
    if (pthread_attr_init(&attributes) != 0) return 0;
    int ran = 0;
    if (pthread_attr_setstacksize(&attributes, (size_t)bytes) == 0) {
#ifdef __GLIBC__
        pthread_setattr_default_np(&attributes);
#endif
        StackCall call = {body, context};
        pthread_t thread;
        if (pthread_create(&thread, &attributes, callOnStack, &call) == 0) {
            pthread_join(thread, NULL);
            ran = 1;
        }
    }
    pthread_attr_destroy(&attributes);
    return ran;
}
