// The machine's limits, against which `backprop bench` reports its workloads (see
// CKernelsPeak.h and Sources/backprop/Bench/MachinePeak.swift).
//
// The FMA loops: independent accumulators, each updated once per trip by one fused multiply-add,
//
//   for trip in 0..<trips:
//     acc[0] = acc[0] · a + b;  acc[1] = acc[1] · a + b;  …  acc[R-1] = acc[R-1] · a + b
//
// so that R multiply-adds are always in flight and the loop runs at the processor's throughput
// (2 FMAs per cycle on Zen and on Intel's cores since Haswell). `a` and `b` come from the caller,
// so the compiler cannot fold them away; the accumulators are written back, so it cannot drop the
// loop. Each is compiled for its instruction set with a `target` attribute and called only where
// the processor runs it (as Gemm.c's kernels are).
//
// The memory loops are plain C, vectorised by the compiler (SSE2 loads are already faster than
// memory): a read that combines every word with exclusive or, and STREAM's triad.

#include "CKernelsPeak.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)

#include <cpuid.h>
#include <immintrin.h>

int bp_peak_avx512_available(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned int osxsave = 1u << 27;
    if ((ecx & osxsave) == 0) return 0;
    // The operating system saves the XMM, YMM and opmask registers and both halves of the ZMM
    // registers (XCR0 bits 1, 2, 5, 6 and 7).
    unsigned int xcr0Low, xcr0High;
    __asm__ volatile("xgetbv" : "=a"(xcr0Low), "=d"(xcr0High) : "c"(0));
    if ((xcr0Low & 0xE6) != 0xE6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx & (1u << 16)) != 0;  // AVX-512F
}

__attribute__((target("avx2,fma"))) long bp_peak_fma_avx2(long trips, float a, float b, float *accumulators) {
    enum { R = BP_PEAK_AVX2_ACCUMULATORS, L = BP_PEAK_AVX2_LANES };
    const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    __m256 acc[R];  // in registers: the loops over r are unrolled
    for (int r = 0; r < R; r++) acc[r] = _mm256_loadu_ps(accumulators + r * L);
    for (long trip = 0; trip < trips; trip++) {
        for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(acc[r], va, vb);
    }
    for (int r = 0; r < R; r++) _mm256_storeu_ps(accumulators + r * L, acc[r]);
    return trips * R * L;
}

__attribute__((target("avx512f"))) long bp_peak_fma_avx512(long trips, float a, float b, float *accumulators) {
    enum { R = BP_PEAK_AVX512_ACCUMULATORS, L = BP_PEAK_AVX512_LANES };
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    __m512 acc[R];  // in registers: the loops over r are unrolled
    for (int r = 0; r < R; r++) acc[r] = _mm512_loadu_ps(accumulators + r * L);
    for (long trip = 0; trip < trips; trip++) {
        for (int r = 0; r < R; r++) acc[r] = _mm512_fmadd_ps(acc[r], va, vb);
    }
    for (int r = 0; r < R; r++) _mm512_storeu_ps(accumulators + r * L, acc[r]);
    return trips * R * L;
}

#else

#include <stdlib.h>

int bp_peak_avx512_available(void) { return 0; }

long bp_peak_fma_avx2(long trips, float a, float b, float *accumulators) {
    (void)trips, (void)a, (void)b, (void)accumulators;
    abort();
}

long bp_peak_fma_avx512(long trips, float a, float b, float *accumulators) {
    (void)trips, (void)a, (void)b, (void)accumulators;
    abort();
}

#endif

long bp_peak_fma_portable(long trips, float a, float b, float *accumulators) {
    enum { R = BP_PEAK_PORTABLE_ACCUMULATORS };
    float acc[R];
    memcpy(acc, accumulators, sizeof acc);
    for (long trip = 0; trip < trips; trip++) {
        for (int r = 0; r < R; r++) acc[r] = acc[r] * a + b;
    }
    memcpy(accumulators, acc, sizeof acc);
    return trips * R * BP_PEAK_PORTABLE_LANES;
}

unsigned long long bp_peak_read(const unsigned long long *words, long count) {
    unsigned long long combined = 0;
    for (long i = 0; i < count; i++) combined ^= words[i];
    return combined;
}

void bp_peak_triad(float *restrict a, const float *restrict b, const float *restrict c, float s, long count) {
    for (long i = 0; i < count; i++) a[i] = b[i] + s * c[i];
}
