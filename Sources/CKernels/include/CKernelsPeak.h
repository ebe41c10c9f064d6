// The machine's limits, measured by `backprop bench` (Peak.c): how many multiply-adds a core
// retires per second when nothing else holds it back, and how fast memory streams.
//
// Each FMA loop keeps `ACCUMULATORS` independent vector registers, each updated by one fused
// multiply-add per trip, `acc = acc · a + b`: no update waits for another, so the loop runs at
// the processor's FMA throughput, not its latency. With `a = 1` and `b = 1` every lane counts its
// own trips (exactly, up to 2^24), which the tests use to check the count of multiply-adds.
#ifndef BACKPROP_CKERNELS_PEAK_H
#define BACKPROP_CKERNELS_PEAK_H

#ifdef __cplusplus
extern "C" {
#endif

/// The FMA loops' independent accumulators and the floats in each.
///
/// AVX2: 12 of 8 lanes (an FMA's latency, 4-5 cycles, times the 2 FMA units of a core is 8-10
/// registers in flight; 12 cover it and leave 4 of the 16 YMM registers for `a` and `b`).
/// AVX-512: 16 of 16 lanes (of 32 ZMM registers). Portable C: 32 single floats, which the
/// compiler vectorises as the processor allows.
enum {
    BP_PEAK_AVX2_ACCUMULATORS = 12,
    BP_PEAK_AVX2_LANES = 8,
    BP_PEAK_AVX512_ACCUMULATORS = 16,
    BP_PEAK_AVX512_LANES = 16,
    BP_PEAK_PORTABLE_ACCUMULATORS = 32,
    BP_PEAK_PORTABLE_LANES = 1,
};

/// 1 if this CPU and operating system run AVX-512F instructions (ZMM and mask registers saved
/// by the system), else 0.
int bp_peak_avx512_available(void);

/// `trips` trips of `BP_PEAK_AVX2_ACCUMULATORS` independent 8-lane FMAs, `acc = acc · a + b`,
/// starting from and written back to `accumulators` (`BP_PEAK_AVX2_ACCUMULATORS × 8` floats).
/// Returns the lane multiply-adds done: `trips × 12 × 8`. Call only when
/// `bp_gemm_avx2_available()` returned 1.
long bp_peak_fma_avx2(long trips, float a, float b, float *accumulators);

/// The same with `BP_PEAK_AVX512_ACCUMULATORS` 16-lane FMAs (`16 × 16` floats); returns
/// `trips × 16 × 16`. Call only when `bp_peak_avx512_available()` returned 1.
long bp_peak_fma_avx512(long trips, float a, float b, float *accumulators);

/// The same in plain C on `BP_PEAK_PORTABLE_ACCUMULATORS` floats (whatever the compiler makes of
/// it for the baseline processor: a multiply and an add where it has no FMA); returns `trips × 32`.
long bp_peak_fma_portable(long trips, float a, float b, float *accumulators);

/// Reads `count` 64-bit words and returns their exclusive or (so that the reads cannot be left
/// out): a streaming read of `8 × count` bytes.
unsigned long long bp_peak_read(const unsigned long long *words, long count);

/// STREAM's triad: `a[i] = b[i] + s · c[i]` for `0 ≤ i < count`: `12 × count` bytes read and
/// written (the arrays must not overlap).
void bp_peak_triad(float *a, const float *b, const float *c, float s, long count);

#ifdef __cplusplus
}
#endif

#endif
