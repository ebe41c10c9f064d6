// The C interface to BLAS, from OpenBLAS (Debian: libopenblas-dev).
#include <cblas.h>
