// What the `backprop` tool does before any library loads (Startup.c).
#ifndef CSTARTUP_H
#define CSTARTUP_H

/// 1 when `Startup.c`'s function ran before the libraries' initialisers (it makes sure
/// OpenBLAS reads `OPENBLAS_NUM_THREADS=1` as it loads), else 0.
int bp_startup_ran(void);

/// Makes `handler` the handler of SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP and SIGSYS
/// when another process sends them (`kill -ABRT`), keeping the handler they had (the Swift
/// runtime's crash report) for faults of the program itself and its own `abort()`
/// (SentSignals.c). Calling it again changes the handler.
void bp_handle_sent_fault_signals(void (*handler)(int));

#endif
