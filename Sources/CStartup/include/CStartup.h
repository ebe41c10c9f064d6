// What the `backprop` tool does before any library loads (Startup.c).
#ifndef CSTARTUP_H
#define CSTARTUP_H

/// 1 when `Startup.c`'s function ran before the libraries' initialisers (it makes sure
/// OpenBLAS reads `OPENBLAS_NUM_THREADS=1` as it loads), else 0.
int bp_startup_ran(void);

#endif
