// The MPI calls Backprop's data-parallel training makes (BackpropDistributed), as functions:
// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE) are macros that expand to
// casts of addresses, which Swift does not import.
#ifndef BACKPROP_CMPI_SHIM_H
#define BACKPROP_CMPI_SHIM_H

#include <mpi.h>
#include <stdint.h>

/// Whether MPI_Init has run in this process.
static inline int bp_mpi_initialized(void) {
    int flag = 0;
    MPI_Initialized(&flag);
    return flag;
}

/// MPI_Init_thread with MPI_THREAD_FUNNELED: only the main thread calls MPI (the thread pool's
/// workers never do). Returns MPI_SUCCESS or an error code.
static inline int bp_mpi_init(void) {
    int provided = 0;
    return MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
}

/// This process's rank in MPI_COMM_WORLD.
static inline int bp_mpi_rank(void) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
}

/// The number of processes in MPI_COMM_WORLD.
static inline int bp_mpi_size(void) {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
}

/// The number of processes on this host (those that share its memory), for the threads each
/// may use.
static inline int bp_mpi_local_size(void) {
    MPI_Comm local;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) != MPI_SUCCESS) return 1;
    int size = 1;
    MPI_Comm_size(local, &size);
    MPI_Comm_free(&local);
    return size;
}

/// values[i] = the sum of values[i] over all processes, in place.
static inline int bp_mpi_sum_floats(float *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

/// values[i] = the sum of values[i] over all processes, in place.
static inline int bp_mpi_sum_doubles(double *values, int count) {
    return MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

/// The smallest and the largest `value` over all processes.
static inline int bp_mpi_min_max(uint64_t value, uint64_t *smallest, uint64_t *largest) {
    int status = MPI_Allreduce(&value, smallest, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    if (status != MPI_SUCCESS) return status;
    return MPI_Allreduce(&value, largest, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
}

/// MPI_Finalize.
static inline int bp_mpi_finalize(void) { return MPI_Finalize(); }

/// MPI_Abort on MPI_COMM_WORLD: ends every process of the run with `code`.
static inline void bp_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

#endif
