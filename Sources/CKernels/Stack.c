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
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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
    int error = pthread_attr_init(&attributes);
    if (error != 0) return error;
    error = pthread_attr_setstacksize(&attributes, (size_t)bytes);
    if (error == 0) {
#ifdef __GLIBC__
        // Before the thread starts: the pool's threads that the command creates get this size.
        // Put back if the thread cannot be had: a default no thread can get (a stack past the
        // address space) left every later thread failing, OpenBLAS's waiting for them for ever.
        pthread_attr_t previous;
        const int saved = pthread_getattr_default_np(&previous) == 0;
        pthread_setattr_default_np(&attributes);
#endif
        StackCall call = {body, context};
        pthread_t thread;
        error = pthread_create(&thread, &attributes, callOnStack, &call);
        if (error == 0) pthread_join(thread, NULL);
#ifdef __GLIBC__
        if (saved) {
            if (error != 0) pthread_setattr_default_np(&previous);
            pthread_attr_destroy(&previous);
        }
#endif
    }
    pthread_attr_destroy(&attributes);
    return error;
}

void bp_refuse_small_stack(long bytes, int error) {
    struct rlimit limit;
    long kibibytes = getrlimit(RLIMIT_STACK, &limit) == 0 ? (long)(limit.rlim_cur / 1024) : -1;
    // Formatted into a buffer on the stack and written at once: no allocation, which may be what
    // failed (the thread's stack under `ulimit -v`).
    char message[512];
    int length = snprintf(message, sizeof message,
        "Error: the stack limit (ulimit -s) is %ld KiB, and a thread with a stack of %ld MiB, on which a command "
        "runs under a smaller limit, could not be started (%s): raise the limit to ulimit -s %ld, or allow more "
        "processes (ulimit -u) or more memory (ulimit -v)\n",
        kibibytes, bytes >> 20, strerror(error), bytes >> 10);
    if (length > 0) {
        ssize_t written = write(STDERR_FILENO, message, (size_t)length < sizeof message ? (size_t)length : sizeof message - 1);
        (void)written;
    }
    _exit(1);
}
