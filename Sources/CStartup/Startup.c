// OpenBLAS with one thread from the moment it loads, for the `backprop` tool only.
//
// OpenBLAS starts a thread per core in its initialiser, which runs before `main`, and Backprop
// never uses them (it calls BLAS on one thread inside the pieces of its own pool; BLASThreads.swift).
// They are not only idle: when `pthread_create` fails, as under `ulimit -s 500000; ulimit -v
// 400000` where each thread's stack takes the stack limit, OpenBLAS prints two lines and raises
// SIGINT, so that even `backprop --version` dies; and under a memory limit their shutdown can loop
// for ever. OpenBLAS reads `OPENBLAS_NUM_THREADS` only in that initialiser.
//
// A function in the executable's `.preinit_array` runs before the initialiser of every shared
// library (glibc's `_dl_init` calls the main program's pre-initialisers first). `setenv` there
// does not reach OpenBLAS: libc's own initialiser, which runs after it, sets `environ` back to the
// array the kernel passed. So the function executes the program again, at once, with the variable
// set to 1 in that array: same arguments, same process id, and the second time nothing loaded
// has started a thread. If the new execution cannot start (no `/proc`), the program goes on as it
// is. A user's own value is replaced too: OpenBLAS's threads are an internal detail of Backprop,
// whose thread count is `--threads` or `BACKPROP_THREADS` (`bench` still gives OpenBLAS more
// threads at run time, to time BLAS on its own). This target is linked into the tool, not the
// library: a program that uses Backprop keeps its environment.
//
// The same function refuses to start, in one line, under an address-space limit (`ulimit -v`)
// that leaves less than 16 MiB once the program and its libraries are mapped: just above what
// loading takes, the libraries' initialisers or the parsing of the arguments ran out of memory,
// and the process trapped (SIGILL, SIGSEGV, or an abort from the Swift runtime).

#include "CStartup.h"

#include <CKernels.h>
#include <string.h>
#include <unistd.h>

static const char setting[] = "OPENBLAS_NUM_THREADS=1";
static const char name[] = "OPENBLAS_NUM_THREADS=";

static int startupRan = 0;

int bp_startup_ran(void) { return startupRan; }

#if defined(__linux__)
/// Ends the process with one line (status 1) when the address space is limited and 16 MiB of it
/// cannot be had: the headroom every tensor allocation asks for (`bp_address_space_has_room`).
static void refuseWithoutRoom(void) {
    if (bp_address_space_has_room(0)) return;
    static const char message[] =
        "Error: out of memory: the address space limit (ulimit -v) leaves less than 16 MiB to run the command in; "
        "raise the limit\n";
    ssize_t written = write(STDERR_FILENO, message, sizeof message - 1);
    (void)written;
    _exit(1);
}

static void oneOpenBLASThread(int argc, char **argv, char **envp) {
    (void)argc;
    startupRan = 1;
    refuseWithoutRoom();
    long count = 0;
    for (char **entry = envp; entry != NULL && *entry != NULL; entry++) {
        if (strcmp(*entry, setting) == 0) return;  // the second execution, or the user's own 1
        count++;
    }
    // The kernel's environment, without any other value of the variable, then the setting: on
    // this stack, which the new execution replaces.
    char *environment[count + 2];
    long kept = 0;
    for (long i = 0; i < count; i++) {
        if (strncmp(envp[i], name, sizeof name - 1) != 0) environment[kept++] = envp[i];
    }
    environment[kept++] = (char *)setting;
    environment[kept] = NULL;
    execve("/proc/self/exe", argv, environment);
    // Only reached if execve failed: go on, with the threads OpenBLAS will start.
}

__attribute__((section(".preinit_array"), used)) static void (*const runBeforeLibraries)(int, char **, char **) =
    oneOpenBLASThread;
#endif
