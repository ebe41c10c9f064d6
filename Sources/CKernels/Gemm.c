// The matrix-product kernel for the seed's skinny shapes, in AVX2 and FMA.
//
// The seed's three large products have one small side (nh = 50, or k = 50):
//   x • w1          (50000 × 784) • (784 × 50)     forward
//   out.g • w1ᵀ     (50000 × 50)  • (50 × 784)     x.g
//   xᵀ • out.g      (784 × 50000) • (50000 × 50)   w1.g
// A general BLAS packs both operands into blocks; here only B is packed (it is small, or cut into
// blocks of `KC` rows), and A, however large, is read in place: once, in the order it lies in
// memory, with the next rows prefetched while the current ones are used. The result of the
// second product (157 MB) is written with non-temporal stores, which do not read it first.
//
//   for each block of KC rows of B (all of B when k ≤ 1024):
//     pack B's block, columns [columnBegin, columnEnd), into panels of 16 columns
//     for each tile of 6 rows × 16 columns of C:            (rows outer when C is tall)
//       C tile (=|+=) A rows • B panel                       (the micro-kernel: 12 registers)
//     C's last 1...4 columns, when A's rows are contiguous: dot products (`dotColumns`)
//
// The third product, whose C is small and depth long, has its own kernel below
// (`bp_gemm_tn_avx2`, vectors along x's rows).
//
// Each kernel comes in AVX2 and in AVX-512 (section "AVX-512"): the tiles differ, the drivers
// (`gemmRange`, `gemmTN`, at the end) are the same code, so every element is the same sum in the
// same order in both.
//
// Tests check it against the reference loops (`referenceGemm`) on every edge of the tiling.

#include "CKernels.h"

#include <stdatomic.h>

#include <stdint.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(_M_X64)

#include <cpuid.h>
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/// Rows of B per packed block when k is large.
enum { KC = 256, KC_WHOLE = 1024, MR = 6, NR = 16 };

/// Calls with at most this many rows of C read a row-major B in place instead of packing it (per
/// instruction set: `GemmVariant.inPlaceRows`). Either way gives the same bits; only the time
/// differs. With AVX-512, `train`'s minibatch of 128 rows is faster in place: one core, B just
/// written by the other core (`Benchmarks/gemm_versions.sh`), `(128, 784) • (784, 128)` 11% and
/// `(128, 256) • (256, 128)` 6% faster; a whole epoch of 784-256-128-10 3-7% faster (epochs
/// alternating between the two in one process). With AVX2 it made no difference, and 96 stays.
enum { IN_PLACE_ROWS_AVX2 = 96, IN_PLACE_ROWS_AVX512 = 128 };

/// The CPU's answer (cpuid, which a virtual machine may trap: microseconds a call).
static int detectAVX2(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const unsigned int fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28;
    if ((ecx & (fma | osxsave | avx)) != (fma | osxsave | avx)) return 0;
    // The operating system saves the YMM registers (XCR0 bits 1 and 2).
    unsigned int xcr0Low, xcr0High;
    __asm__ volatile("xgetbv" : "=a"(xcr0Low), "=d"(xcr0High) : "c"(0));
    if ((xcr0Low & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx & (1u << 5)) != 0;  // AVX2
}

/// `detect()`'s answer, asked once and kept in `known` (-1 until then; a relaxed atomic: threads
/// may ask at once, and all get the same answer).
static int askedOnce(atomic_int *known, int (*detect)(void)) {
    int value = atomic_load_explicit(known, memory_order_relaxed);
    if (value < 0) {
        value = detect();
        atomic_store_explicit(known, value, memory_order_relaxed);
    }
    return value;
}

int bp_gemm_avx2_available(void) {
    static atomic_int known = -1;
    return askedOnce(&known, detectAVX2);
}

// MARK: Packing

/// The number of floats that `packPanels` writes for `k` rows and `width` columns, its last
/// panel `narrow` columns wide when it has at most that many.
static long panelFloats(long k, long width, long narrow) {
    const long full = width / NR, rest = width % NR;
    return k * (full * NR + (rest == 0 ? 0 : rest <= narrow ? narrow : NR));
}

/// The 8 × 8 block at `source` (rows `stride` floats apart) transposed into `destination` (rows
/// `panel` floats apart): `destination[i·panel + r] = source[r·stride + i]`.
static TARGET void transpose8(const float *source, long stride, float *destination, long panel) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(source + i * stride);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        _mm256_storeu_ps(destination + i * panel, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(destination + (i + 4) * panel, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

/// The blocks of 8 rows × 8 columns of one panel of a B whose columns lie contiguous (`w.t()`, as
/// in the MLP's `inp.g = out.g • w.t()`: `B[p, j] = b[p + j·columnStride]`), read along those
/// columns and transposed in registers, where element by element every read would be a stride
/// apart: `(128, 256)` in two panels' worth per thread took 5 µs of a 25 µs product. `columns` is a
/// multiple of 8 (a whole panel). Returns the rows of B done (a multiple of 8); `packPanels`
/// copies the rest.
static TARGET long packTransposedBlocks(long k, long columns, const float *b, long columnStride, float *packed,
    long panel)
{
    const long rows = k / 8 * 8;
    for (long j = 0; j < columns; j += 8) {
        for (long p = 0; p < rows; p += 8) transpose8(b + j * columnStride + p, columnStride, packed + p * panel + j, panel);
    }
    return rows;
}

/// Copies `k` rows and `width` columns of B into panels of 16 columns, one after another, each
/// panel `k × 16` row-major (`k × narrow` for a last panel of at most `narrow` columns),
/// zero-padded on the right.
static void packPanels(long k, long width, const float *b, long rowStride, long columnStride, float *packed,
    long narrow)
{
    for (long j0 = 0; j0 < width; j0 += NR) {
        const long columns = width - j0 < NR ? width - j0 : NR;
        const long panel = columns <= narrow ? narrow : NR;
        // A transposed B: its whole 8 × 8 blocks first (when the panel is whole: 8 or 16 columns),
        // then the rows left element by element below.
        const long blocked = rowStride == 1 && columnStride != 1 && columns == panel
            ? packTransposedBlocks(k, columns, b + j0 * columnStride, columnStride, packed, panel) : 0;
        for (long p = blocked; p < k; p++) {
            float *row = packed + p * panel;
            const float *source = b + p * rowStride + j0 * columnStride;
            long jj = 0;
            if (columnStride == 1) {
                for (; jj < columns; jj++) row[jj] = source[jj];
            } else {
                for (; jj < columns; jj++) row[jj] = source[jj * columnStride];
            }
            for (; jj < panel; jj++) row[jj] = 0;
        }
        packed += k * panel;
    }
}

/// AVX2's panels: a last panel of at most 8 columns is 8 wide (one vector).
static long packedCount(long k, long width) { return panelFloats(k, width, 8); }

static void packB(long k, long width, const float *b, long rowStride, long columnStride, float *packed) {
    packPanels(k, width, b, rowStride, columnStride, packed, 8);
}

/// AVX-512's panels: every panel 16 wide (one vector).
static long packedCount16(long k, long width) { return panelFloats(k, width, NR); }

static void packB16(long k, long width, const float *b, long rowStride, long columnStride, float *packed) {
    packPanels(k, width, b, rowStride, columnStride, packed, NR);
}

/// This thread's packing buffer, grown as needed and kept for the next call.
static float *scratch(long count) {
    static _Thread_local float *buffer = NULL;
    static _Thread_local long capacity = 0;
    if (count > capacity) {
        free(buffer);
        long rounded = (count + 4095) & ~4095L;
        buffer = aligned_alloc(64, (size_t)rounded * sizeof(float));
        capacity = buffer ? rounded : 0;
        bp_free_at_thread_exit(BP_THREAD_BUFFER_PACKING, buffer);
        if (!buffer) bp_out_of_memory(rounded * (long)sizeof(float), "the packing buffer of a matrix product");
    }
    return buffer;
}

// MARK: Prefetching

/// A region of `count` segments (`length` bytes each, `stride` bytes apart), prefetched a few
/// cache lines at a time so that the next rows of A, or the next panel of B, arrive while the
/// current ones are used.
typedef struct Prefetcher {
    const char *base;
    long count, stride, length, segment, offset;
} Prefetcher;

/// Asks for the next `lines` lines of the region: into L1 (`_MM_HINT_T0`), or with `intoL2` into
/// L2 only, for data that the next tiles need rather than this one (so that it does not push the
/// current tile's lines out of L1). `intoL2` is a constant at every call, so the branch folds away.
static inline __attribute__((always_inline)) void prefetchLines(Prefetcher *f, long lines, int intoL2) {
    while (lines > 0 && f->segment < f->count) {
        const char *line = f->base + f->segment * f->stride + f->offset;
        if (intoL2) {
            _mm_prefetch(line, _MM_HINT_T1);
        } else {
            _mm_prefetch(line, _MM_HINT_T0);
        }
        f->offset += 64;
        if (f->offset >= f->length) {
            f->offset = 0;
            f->segment++;
        }
        lines--;
    }
}

/// How far ahead, in floats along a row, a tile prefetches the rows of a row-major A (`x` in
/// `x • w1`): three cache lines. Each row's next line is asked for once per 16 steps of k, when
/// the tile starts on the current one. Measured on the seed's `x • w1` (x from memory) on a Xeon
/// with two 512-bit FMA units (`Benchmarks/gemm_versions.sh`): 47-50 ms on one core without it,
/// 38-40 ms with it; 32 and 64 floats ahead were as good, 96 and beyond worse, and asking for a
/// whole tile's rows at once before it starts (the way this file did it before) was no better
/// than nothing. (Prefetching once per 16 steps from an outer loop instead of testing the step
/// inside the loop measured 7-15% slower: the compiler schedules the split loop worse.)
enum { A_PREFETCH_FLOATS = 48 };

/// Prefetches the line `A_PREFETCH_FLOATS` ahead of step `p` in each of the tile's `mr` rows,
/// every 16 steps, when asked (`prefetchA`: A's rows are contiguous and A is too large for the
/// caches; a minibatch's A, already in L1 or L2, gains nothing from it).
#define PREFETCH_A_ROWS(prefetchA, p, mr, a, rowStrideA)                                                   \
    if ((prefetchA) && ((p) & 15) == 0) {                                                                    \
        for (int r_ = 0; r_ < (mr); r_++) {                                                                   \
            _mm_prefetch((const char *)((a) + r_ * (rowStrideA) + (p) + A_PREFETCH_FLOATS), _MM_HINT_T0);    \
        }                                                                                                     \
    }

// MARK: The micro-kernel

static const int32_t maskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/// A mask with the first `width` (0...8) lanes on.
INLINE TARGET __m256i firstLanes(long width) {
    return _mm256_loadu_si256((const __m256i *)(maskTable + 8 - width));
}

/// How `tile` reads B: a packed panel (aligned, zero-padded), or B in place (row-major, row
/// stride `ldb`) with all `nv` vectors whole, or in place with the last vector through a mask.
enum { PANEL_PACKED = 0, PANEL_IN_PLACE = 1, PANEL_IN_PLACE_PARTIAL = 2 };

/// One tile of C: `mr` rows (1...6) × `nv` vectors of 8 columns, of which the first `width`
/// are written. `b` is a panel of B read as `source` says (row stride `ldb`). `prefetchA`: ask
/// for A's rows ahead (`PREFETCH_A_ROWS`).
INLINE TARGET void tile(const int source, const int mr, const int nv, long width, long k, const float *a, long rowStrideA,
    long columnStrideA, const float *b, long ldb, float *c, long ldc, const float *bias, int accumulate,
    int streaming, int prefetchA)
{
    __m256 acc[MR][2];
    const int partial = width < nv * 8;
    const __m256i mask = firstLanes(width - (nv - 1) * 8);
    __m256 start0 = _mm256_setzero_ps(), start1 = _mm256_setzero_ps();
    if (bias) {
        if (nv == 2) {
            start0 = _mm256_loadu_ps(bias);
            start1 = partial ? _mm256_maskload_ps(bias + 8, mask) : _mm256_loadu_ps(bias + 8);
        } else {
            start0 = partial ? _mm256_maskload_ps(bias, mask) : _mm256_loadu_ps(bias);
        }
    }
    for (int r = 0; r < mr; r++) {
        acc[r][0] = start0;
        acc[r][1] = start1;
    }
    for (long p = 0; p < k; p++) {
        PREFETCH_A_ROWS(prefetchA, p, mr, a, rowStrideA)
        __m256 b0, b1;
        if (source == PANEL_PACKED) {
            b0 = _mm256_load_ps(b + p * ldb);
            b1 = nv == 2 ? _mm256_load_ps(b + p * ldb + 8) : b0;
        } else if (source == PANEL_IN_PLACE || nv == 2) {
            b0 = _mm256_loadu_ps(b + p * ldb);
            b1 = nv == 1 ? b0
                : source == PANEL_IN_PLACE ? _mm256_loadu_ps(b + p * ldb + 8)
                : _mm256_maskload_ps(b + p * ldb + 8, mask);
        } else {
            b0 = b1 = _mm256_maskload_ps(b + p * ldb, mask);
        }
        const float *ap = a + p * columnStrideA;
        for (int r = 0; r < mr; r++) {
            const __m256 av = _mm256_broadcast_ss(ap + r * rowStrideA);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            if (nv == 2) acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        if (!partial) {
            if (accumulate) {
                acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(row));
                if (nv == 2) acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(row + 8));
            }
            if (streaming) {
                _mm256_stream_ps(row, acc[r][0]);
                if (nv == 2) _mm256_stream_ps(row + 8, acc[r][1]);
            } else {
                _mm256_storeu_ps(row, acc[r][0]);
                if (nv == 2) _mm256_storeu_ps(row + 8, acc[r][1]);
            }
        } else if (nv == 2) {
            if (accumulate) {
                acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(row));
                acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_maskload_ps(row + 8, mask));
            }
            _mm256_storeu_ps(row, acc[r][0]);
            _mm256_maskstore_ps(row + 8, mask, acc[r][1]);
        } else {
            if (accumulate) acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_maskload_ps(row, mask));
            _mm256_maskstore_ps(row, mask, acc[r][0]);
        }
    }
}

/// `tile` for a packed panel of 9-12 columns (a classifier's 10): one vector of 8 and a 128-bit
/// vector of 4 for the rest, instead of two vectors of 8. Each element is the same chain of fused
/// multiply-adds as in `tile` (bias or zero, then p = 0, 1, …, then C when accumulating), so the same
/// bits. Zen 1 runs a 256-bit FMA as two 128-bit halves: 10 columns took four halves a row and step
/// of k, now three. (A B read in place never ends a panel inside a vector here: `packsPartialPanel`.)
INLINE TARGET void tileHalf(const int mr, long width, long k, const float *a, long rowStrideA, long columnStrideA,
    const float *b, float *c, long ldc, const float *bias, int accumulate, int prefetchA)
{
    __m256 acc[MR];
    __m128 rest[MR];
    const int partial = width < 12;
    const __m128i mask = _mm_loadu_si128((const __m128i *)(maskTable + 8 - (width - 8)));
    const __m256 start0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
    const __m128 start1 = !bias ? _mm_setzero_ps()
        : partial               ? _mm_maskload_ps(bias + 8, mask)
                                : _mm_loadu_ps(bias + 8);
    for (int r = 0; r < mr; r++) {
        acc[r] = start0;
        rest[r] = start1;
    }
    for (long p = 0; p < k; p++) {
        PREFETCH_A_ROWS(prefetchA, p, mr, a, rowStrideA)
        const __m256 b0 = _mm256_load_ps(b + p * NR);
        const __m128 b1 = _mm_load_ps(b + p * NR + 8);
        const float *ap = a + p * columnStrideA;
        for (int r = 0; r < mr; r++) {
            const float *ar = ap + r * rowStrideA;
            acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(ar), b0, acc[r]);
            rest[r] = _mm_fmadd_ps(_mm_broadcast_ss(ar), b1, rest[r]);
        }
    }
    for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        if (accumulate) {
            acc[r] = _mm256_add_ps(acc[r], _mm256_loadu_ps(row));
            rest[r] = _mm_add_ps(rest[r], partial ? _mm_maskload_ps(row + 8, mask) : _mm_loadu_ps(row + 8));
        }
        _mm256_storeu_ps(row, acc[r]);
        if (partial) {
            _mm_maskstore_ps(row + 8, mask, rest[r]);
        } else {
            _mm_storeu_ps(row + 8, rest[r]);
        }
    }
}

#define TILE_HALF_ROWS(PF)                                                                                    \
    switch (mr) {                                                                                             \
    case 6: tileHalf(6, width, k, a, rsA, csA, b, c, ldc, bias, accumulate, PF); break;                       \
    case 5: tileHalf(5, width, k, a, rsA, csA, b, c, ldc, bias, accumulate, PF); break;                       \
    case 4: tileHalf(4, width, k, a, rsA, csA, b, c, ldc, bias, accumulate, PF); break;                       \
    case 3: tileHalf(3, width, k, a, rsA, csA, b, c, ldc, bias, accumulate, PF); break;                       \
    case 2: tileHalf(2, width, k, a, rsA, csA, b, c, ldc, bias, accumulate, PF); break;                       \
    default: tileHalf(1, width, k, a, rsA, csA, b, c, ldc, bias, accumulate, PF); break;                      \
    }

#define TILE_ROWS(SOURCE, NV, PF)                                                                             \
    switch (mr) {                                                                                             \
    case 6: tile(SOURCE, 6, NV, width, k, a, rsA, csA, b, ldb, c, ldc, bias, accumulate, streaming, PF); break;   \
    case 5: tile(SOURCE, 5, NV, width, k, a, rsA, csA, b, ldb, c, ldc, bias, accumulate, streaming, PF); break;   \
    case 4: tile(SOURCE, 4, NV, width, k, a, rsA, csA, b, ldb, c, ldc, bias, accumulate, streaming, PF); break;   \
    case 3: tile(SOURCE, 3, NV, width, k, a, rsA, csA, b, ldb, c, ldc, bias, accumulate, streaming, PF); break;   \
    case 2: tile(SOURCE, 2, NV, width, k, a, rsA, csA, b, ldb, c, ldc, bias, accumulate, streaming, PF); break;   \
    default: tile(SOURCE, 1, NV, width, k, a, rsA, csA, b, ldb, c, ldc, bias, accumulate, streaming, PF); break;  \
    }

#define TILE_SOURCES(NV, PF)                                                                                  \
    if (!inPlace) {                                                                                           \
        TILE_ROWS(PANEL_PACKED, NV, PF)                                                                       \
    } else if (width == NV * 8) {                                                                             \
        TILE_ROWS(PANEL_IN_PLACE, NV, PF)                                                                     \
    } else {                                                                                                  \
        TILE_ROWS(PANEL_IN_PLACE_PARTIAL, NV, PF)                                                             \
    }

/// The tile at rows `mr` (1...6) and `width` columns (1...16), specialised for each size, reading
/// a packed panel of B (16 columns wide, 8 for a last one of at most 8) or (`inPlace`) B itself,
/// whose rows are `rowStrideB` apart; a packed panel of 9-12 columns takes `tileHalf`.
/// Non-temporal stores (`streaming`) for whole tiles only. Specialised for `prefetchA` too, so that
/// the loop over k of a product that does not prefetch (a minibatch's, all in the caches) does not
/// test it at every step: the compiler kept the test (a load and five instructions besides the
/// tile's 20) inside the loop. Measured on Zen 1
/// (`Benchmarks/gemm_versions.sh`, one core, two runs): the minibatch's shapes 0.885-0.98 of the
/// time before, the seed's within 1-2% either way.
static TARGET void anyTile(int inPlace, int mr, long width, long k, const float *a, long rsA, long csA,
    const float *b, long rowStrideB, float *c, long ldc, const float *bias, int accumulate, int streaming, int prefetchA)
{
    const long ldb = inPlace ? rowStrideB : width <= 8 ? 8 : NR;
    streaming = streaming && width == NR;
    if (!inPlace && width > 8 && width <= 12) {
        if (prefetchA) {
            TILE_HALF_ROWS(1)
        } else {
            TILE_HALF_ROWS(0)
        }
        return;
    }
    if (prefetchA) {
        if (width > 8) {
            TILE_SOURCES(2, 1)
        } else {
            TILE_SOURCES(1, 1)
        }
    } else if (width > 8) {
        TILE_SOURCES(2, 0)
    } else {
        TILE_SOURCES(1, 0)
    }
}

// MARK: The last few columns

// When C's width is a few columns past a multiple of 16 (the seed's 50 = 3 × 16 + 2), a last
// panel of 8 lanes would do 8 columns' work for 2. Where A's rows lie contiguous (x in `x • w1`),
// those columns are dot products instead: vectors along k, over a row of A and a column of B
// (packed as a row), summed across the lanes at the end.

/// The most columns computed as dot products (`dotTile` keeps `mr × 2` sums in registers).
enum { DOT_COLUMNS = 4 };

/// The sum of the 8 lanes of `v`.
INLINE TARGET float laneSum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// C's `mr` rows (1...6) × `nc` columns (1 or 2): dot products of rows of A (contiguous, `rsA`
/// apart) with `nc` rows of `w` (B's columns, `ldw` apart, zero-padded to a multiple of 8).
INLINE TARGET void dotTile(const int mr, const int nc, long k, const float *a, long rsA, const float *w, long ldw,
    float *c, long ldc, const float *bias, int accumulate)
{
    __m256 acc[MR][2];
    for (int r = 0; r < mr; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    const long full = k / 8 * 8;
    for (long p = 0; p < full; p += 8) {
        const __m256 w0 = _mm256_load_ps(w + p);
        const __m256 w1 = nc == 2 ? _mm256_load_ps(w + ldw + p) : w0;
        for (int r = 0; r < mr; r++) {
            const __m256 x = _mm256_loadu_ps(a + r * rsA + p);
            acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
            if (nc == 2) acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
        }
    }
    if (full < k) {
        // A's last partial vector through a mask (past its end may be another allocation).
        const __m256i mask = firstLanes(k - full);
        const __m256 w0 = _mm256_load_ps(w + full);
        const __m256 w1 = nc == 2 ? _mm256_load_ps(w + ldw + full) : w0;
        for (int r = 0; r < mr; r++) {
            const __m256 x = _mm256_maskload_ps(a + r * rsA + full, mask);
            acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
            if (nc == 2) acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
        }
    }
    for (int r = 0; r < mr; r++) {
        for (int j = 0; j < nc; j++) {
            float value = laneSum(acc[r][j]);
            if (bias) value += bias[j];
            if (accumulate) value += c[r * ldc + j];
            c[r * ldc + j] = value;
        }
    }
}

#define DOT_ROWS(NC)                                                                                      \
    switch (mr) {                                                                                         \
    case 6: dotTile(6, NC, k, a, rsA, w, ldw, c, ldc, bias, accumulate); break;                           \
    case 5: dotTile(5, NC, k, a, rsA, w, ldw, c, ldc, bias, accumulate); break;                           \
    case 4: dotTile(4, NC, k, a, rsA, w, ldw, c, ldc, bias, accumulate); break;                           \
    case 3: dotTile(3, NC, k, a, rsA, w, ldw, c, ldc, bias, accumulate); break;                           \
    case 2: dotTile(2, NC, k, a, rsA, w, ldw, c, ldc, bias, accumulate); break;                           \
    default: dotTile(1, NC, k, a, rsA, w, ldw, c, ldc, bias, accumulate); break;                          \
    }

/// C's `mr` rows × `columns` (1...DOT_COLUMNS) columns as dot products, two columns at a time.
static TARGET void dotColumns(int mr, long columns, long k, const float *a, long rsA, const float *w, long ldw,
    float *c, long ldc, const float *bias, int accumulate)
{
    for (long j = 0; j < columns; j += 2, w += 2 * ldw, c += 2, bias = bias ? bias + 2 : NULL) {
        if (columns - j >= 2) {
            DOT_ROWS(2)
        } else {
            DOT_ROWS(1)
        }
    }
}

// Where A's columns lie contiguous instead (a transposed A, xᵀ in `w.g = xᵀ • out.g`), the same
// columns are vectors down C's columns: 8 rows of C at a time, each vector a stretch of one row of
// x, times the broadcast element of B (the minibatch's `w1.g`, `(784, 64)ᵀ • (64, 50)`, spent a
// seventh of its multiply-adds on a last panel of 8 lanes for 2 columns, and one masked store per
// row).

/// Rows of C per call of `columnTail256`: 3 vectors of 8, so that 4 columns' sums (12 registers),
/// the 3 rows of x and the broadcast fit in the 16 registers of AVX2.
enum { TAIL_VECTORS = 3, TAIL_ROWS = TAIL_VECTORS * 8 };

/// C's last `nc` (1...DOT_COLUMNS) columns for `height` rows, `(nv - 1) · 8 < height ≤ nv · 8`
/// (`nv` 1...TAIL_VECTORS), when A's column `p` lies contiguous at `a + p · csA`: vectors run down
/// C's columns. Each element is the same chain as in `tile` (bias or zero, then p = 0, 1, …, then
/// C when accumulating), so the same bits. B's element `(p, j)` is `b[p * rsB + j * csB]`. A last
/// vector of fewer than 8 rows is read through a mask (past x's last row there may be no memory).
INLINE TARGET void columnTail256(const int nc, const int nv, long height, long k, const float *a, long csA,
    const float *b, long rsB, long csB, float *c, long ldc, const float *bias, int accumulate)
{
    __m256 acc[TAIL_VECTORS][DOT_COLUMNS];
    const int partial = height < nv * 8;
    const __m256i mask = firstLanes(height - (nv - 1) * 8);
    for (int j = 0; j < nc; j++) {
        const __m256 start = bias ? _mm256_set1_ps(bias[j]) : _mm256_setzero_ps();
        for (int v = 0; v < nv; v++) acc[v][j] = start;
    }
    for (long p = 0; p < k; p++) {
        const float *column = a + p * csA;
        __m256 x[TAIL_VECTORS];
        for (int v = 0; v < nv; v++) {
            x[v] = partial && v == nv - 1 ? _mm256_maskload_ps(column + v * 8, mask) : _mm256_loadu_ps(column + v * 8);
        }
        for (int j = 0; j < nc; j++) {
            const __m256 bj = _mm256_broadcast_ss(b + p * rsB + j * csB);
            for (int v = 0; v < nv; v++) acc[v][j] = _mm256_fmadd_ps(x[v], bj, acc[v][j]);
        }
    }
    float sums[TAIL_ROWS];
    for (int j = 0; j < nc; j++) {
        for (int v = 0; v < nv; v++) _mm256_storeu_ps(sums + v * 8, acc[v][j]);
        for (long r = 0; r < height; r++) {
            float *target = c + r * ldc + j;
            *target = accumulate ? sums[r] + *target : sums[r];
        }
    }
}

#define COLUMN_TAIL_VECTORS(NC)                                                                               \
    switch (nv) {                                                                                             \
    case 3: columnTail256(NC, 3, height, k, a, csA, b, rsB, csB, c, ldc, bias, accumulate); break;            \
    case 2: columnTail256(NC, 2, height, k, a, csA, b, rsB, csB, c, ldc, bias, accumulate); break;            \
    default: columnTail256(NC, 1, height, k, a, csA, b, rsB, csB, c, ldc, bias, accumulate); break;           \
    }

/// `columnTail256` for `columns` (1...DOT_COLUMNS) columns and `height` (1...TAIL_ROWS) rows,
/// specialised for each count of columns and of vectors.
static TARGET void columnTailAVX2(int columns, long height, long k, const float *a, long csA, const float *b,
    long rsB, long csB, float *c, long ldc, const float *bias, int accumulate)
{
    const int nv = (int)((height + 7) / 8);
    switch (columns) {
    case 4: COLUMN_TAIL_VECTORS(4) break;
    case 3: COLUMN_TAIL_VECTORS(3) break;
    case 2: COLUMN_TAIL_VECTORS(2) break;
    default: COLUMN_TAIL_VECTORS(1) break;
    }
}

// MARK: Products with a long depth and a small result

// `w1.g = xᵀ • out.g` sums 50,000 outer products of a row of x (784) and a row of out.g (50) into
// a small C (784 × 50). Here the vectors run along x's rows, which lie contiguous in memory: the
// kernel reads x in blocks of consecutive rows (each block one stretch of memory, which the
// hardware streams in), and keeps C transposed, T = Cᵀ (50 × 784), in registers a tile of 5 rows ×
// 16 columns at a time. B's block (rows of out.g) is packed 5 columns at a time for the broadcasts.
// There is no padding to waste on the seed's shapes: 784 = 49 × 16 and 50 = 10 × 5.
//
//   for each block of 64 rows of A's depth (rows of x and of out.g):
//     pack B's block into tiles of 5 columns
//     for each 16 columns of x:  for each tile of 5 columns of out.g:
//       T tile (5 × 16) += out.g block tileᵀ • x block columns      (10 registers)

enum { TN_COLUMNS = 5, TN_BLOCK = 64 };

/// One tile of T: 5 rows × `nv` vectors of 8 columns; `width` (1...16) columns of x are read.
INLINE TARGET void tnTile(const int nv, const int masked, long width, long kb, const float *a, long lda,
    const float *g, float *t, long ldt)
{
    __m256 acc[TN_COLUMNS][2];
    const __m256i mask = firstLanes(width - (nv - 1) * 8);
    for (int r = 0; r < TN_COLUMNS; r++) {
        acc[r][0] = _mm256_loadu_ps(t + r * ldt);
        acc[r][1] = nv == 2 ? _mm256_loadu_ps(t + r * ldt + 8) : acc[r][0];
    }
    for (long p = 0; p < kb; p++) {
        const float *row = a + p * lda;
        __m256 x0, x1;
        if (nv == 2) {
            x0 = _mm256_loadu_ps(row);
            x1 = masked ? _mm256_maskload_ps(row + 8, mask) : _mm256_loadu_ps(row + 8);
        } else {
            x0 = masked ? _mm256_maskload_ps(row, mask) : _mm256_loadu_ps(row);
            x1 = x0;
        }
        const float *gp = g + p * TN_COLUMNS;
        for (int r = 0; r < TN_COLUMNS; r++) {
            const __m256 gv = _mm256_broadcast_ss(gp + r);
            acc[r][0] = _mm256_fmadd_ps(x0, gv, acc[r][0]);
            if (nv == 2) acc[r][1] = _mm256_fmadd_ps(x1, gv, acc[r][1]);
        }
    }
    for (int r = 0; r < TN_COLUMNS; r++) {
        _mm256_storeu_ps(t + r * ldt, acc[r][0]);
        if (nv == 2) _mm256_storeu_ps(t + r * ldt + 8, acc[r][1]);
    }
}

/// Copies `kb` rows of B's `n` columns into `tiles` tiles of 5 columns (`kb × 5` row-major each,
/// the columns past `n` zero), for the broadcasts of `tnTile`.
static void packTN(long tiles, long kb, const float *b, long rowStrideB, long columnStrideB, long n, float *packed) {
    for (long q = 0; q < tiles; q++) {
        float *tile = packed + q * kb * TN_COLUMNS;
        for (long p = 0; p < kb; p++) {
            const float *source = b + p * rowStrideB;
            for (long r = 0; r < TN_COLUMNS; r++) {
                const long j = q * TN_COLUMNS + r;
                tile[p * TN_COLUMNS + r] = j < n ? source[j * columnStrideB] : 0;
            }
        }
    }
}

long bp_gemm_tn_rows(long n) { return (n + TN_COLUMNS - 1) / TN_COLUMNS * TN_COLUMNS; }

long bp_gemm_tn_columns(long m) { return (m + NR - 1) / NR * NR; }

/// One tile of T, `width` (1...16) columns of x: `tnTile` specialised for it.
static TARGET void tnTileAVX2(long width, long kb, const float *a, long lda, const float *g, float *t, long ldt) {
    if (width == NR) {
        tnTile(2, 0, width, kb, a, lda, g, t, ldt);
    } else if (width > 8) {
        tnTile(2, 1, width, kb, a, lda, g, t, ldt);
    } else {
        tnTile(1, 1, width, kb, a, lda, g, t, ldt);
    }
}

// MARK: AVX-512

// Where the processor has AVX-512 (Zen 4 and 5, Intel since Skylake-SP), the same products run
// with 16-lane vectors. Each element of C is the same chain of fused multiply-adds, in the same
// order (p = 0, 1, …, k−1, starting from the bias or zero, C added last when accumulating), as in
// the AVX2 kernels above: only which elements share a register changes, so the results are the
// same bits (tested). On Zen 5, whose FMA units are 512 bits wide, that doubles the arithmetic
// rate; on Zen 4 (two 256-bit halves) it saves instructions.
//
// The tiles are 6 rows × up to 48 columns (three vectors: the seed's 50 columns are one tile and
// a 2-column tail of dot products, as above) and, for `xᵀ • B`, 5 rows × up to 48 columns of T.
// Masked loads and stores handle the last partial vector; they never touch the masked-off lanes'
// memory.

#define TARGET512 __attribute__((target("avx512f,avx2,fma")))

/// Columns per AVX-512 tile: three vectors of 16; and rows of x per block of `bp_gemm_tn_avx512`
/// (half the AVX2 kernel's: a block of the seed's x is then 100 KB, and measured 5% faster).
enum { VL = 16, NV_WIDE = 3, NR_WIDE = NV_WIDE * VL, TN_BLOCK_WIDE = 32 };

/// The CPU's answer: AVX-512F, and the operating system saves the opmask and ZMM registers
/// (XCR0 bits 1, 2, 5, 6 and 7), on top of AVX2 and FMA. No when the environment variable
/// `BACKPROP_NO_AVX512` is set (to compare the two on one machine: they give the same bits).
static int detectAVX512(void) {
    if (getenv("BACKPROP_NO_AVX512")) return 0;
    if (!detectAVX2()) return 0;
    unsigned int eax, ebx, ecx, edx;
    unsigned int xcr0Low, xcr0High;
    __asm__ volatile("xgetbv" : "=a"(xcr0Low), "=d"(xcr0High) : "c"(0));
    if ((xcr0Low & 0xE6) != 0xE6) return 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx & (1u << 16)) != 0;  // AVX-512F
}

int bp_gemm_avx512_available(void) {
    static atomic_int known = -1;
    return askedOnce(&known, detectAVX512);
}

/// Whether the kernels that choose for themselves (Adam's update, the direct convolution, the
/// softmax's exponentials) may take their AVX-512 paths; tests turn it off to compare them with the
/// AVX2 paths. Both give the same bits, so a test running meanwhile sees no difference.
static atomic_int avx512Allowed = 1;

void bp_kernels_allow_avx512(int allowed) { atomic_store_explicit(&avx512Allowed, allowed != 0, memory_order_relaxed); }

int bp_kernels_use_avx512(void) {
    return atomic_load_explicit(&avx512Allowed, memory_order_relaxed) && bp_gemm_avx512_available();
}

/// A mask with the first `width` lanes on (all 16 for `width` ≥ 16).
INLINE TARGET512 __mmask16 lanes16(long width) {
    return width >= VL ? (__mmask16)0xFFFF : (__mmask16)((1u << width) - 1);
}

/// One tile of C: `mr` rows (1...6) × `nv` vectors (1...3) of 16 columns, of which the first
/// `width` are written. B is packed panels (`inPlace` 0: vector `v` of row `p` at
/// `b + v * panelStride + p * 16`) or B itself (`inPlace` 1: at `b + p * ldb + v * 16`).
/// `prefetchA`: ask for A's rows ahead (`PREFETCH_A_ROWS`).
INLINE TARGET512 void tile512(const int inPlace, const int mr, const int nv, long width, long k, const float *a,
    long rowStrideA, long columnStrideA, const float *b, long ldb, long panelStride, float *c, long ldc,
    const float *bias, int accumulate, int streaming, int prefetchA)
{
    const __mmask16 last = lanes16(width - (nv - 1) * VL);
    __m512 acc[MR][NV_WIDE];
    for (int v = 0; v < nv; v++) {
        const __mmask16 m = v == nv - 1 ? last : (__mmask16)0xFFFF;
        const __m512 start = bias ? _mm512_maskz_loadu_ps(m, bias + v * VL) : _mm512_setzero_ps();
        for (int r = 0; r < mr; r++) acc[r][v] = start;
    }
    for (long p = 0; p < k; p++) {
        PREFETCH_A_ROWS(prefetchA, p, mr, a, rowStrideA)
        __m512 bv[NV_WIDE];
        for (int v = 0; v < nv; v++) {
            if (inPlace) {
                bv[v] = _mm512_maskz_loadu_ps(v == nv - 1 ? last : (__mmask16)0xFFFF, b + p * ldb + v * VL);
            } else {
                bv[v] = _mm512_load_ps(b + v * panelStride + p * VL);
            }
        }
        const float *ap = a + p * columnStrideA;
        for (int r = 0; r < mr; r++) {
            const __m512 av = _mm512_set1_ps(ap[r * rowStrideA]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < mr; r++) {
        float *row = c + r * ldc;
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v == nv - 1 ? last : (__mmask16)0xFFFF;
            if (accumulate) acc[r][v] = _mm512_add_ps(acc[r][v], _mm512_maskz_loadu_ps(m, row + v * VL));
            if (streaming && m == (__mmask16)0xFFFF) {
                _mm512_stream_ps(row + v * VL, acc[r][v]);
            } else {
                _mm512_mask_storeu_ps(row + v * VL, m, acc[r][v]);
            }
        }
    }
}

#define TILE512_ROWS(IN_PLACE, NV, PF)                                                                         \
    switch (mr) {                                                                                             \
    case 6: tile512(IN_PLACE, 6, NV, width, k, a, rsA, csA, b, ldb, ps, c, ldc, bias, accumulate, streaming, PF); break;  \
    case 5: tile512(IN_PLACE, 5, NV, width, k, a, rsA, csA, b, ldb, ps, c, ldc, bias, accumulate, streaming, PF); break;  \
    case 4: tile512(IN_PLACE, 4, NV, width, k, a, rsA, csA, b, ldb, ps, c, ldc, bias, accumulate, streaming, PF); break;  \
    case 3: tile512(IN_PLACE, 3, NV, width, k, a, rsA, csA, b, ldb, ps, c, ldc, bias, accumulate, streaming, PF); break;  \
    case 2: tile512(IN_PLACE, 2, NV, width, k, a, rsA, csA, b, ldb, ps, c, ldc, bias, accumulate, streaming, PF); break;  \
    default: tile512(IN_PLACE, 1, NV, width, k, a, rsA, csA, b, ldb, ps, c, ldc, bias, accumulate, streaming, PF); break; \
    }

#define TILE512_SOURCES(NV, PF)                                                                                \
    if (inPlace) {                                                                                            \
        TILE512_ROWS(1, NV, PF)                                                                               \
    } else {                                                                                                  \
        TILE512_ROWS(0, NV, PF)                                                                               \
    }

/// The tile at rows `mr` (1...6) and `width` columns (1...48), specialised for each size, reading
/// packed panels of 16 columns (`packB16`) or (`inPlace`) B itself, whose rows are `rowStrideB`
/// apart; and for `prefetchA`, as `anyTile` is.
static TARGET512 void anyTile512(int inPlace, int mr, long width, long k, const float *a, long rsA, long csA,
    const float *b, long rowStrideB, float *c, long ldc, const float *bias, int accumulate, int streaming, int prefetchA)
{
    const long ldb = rowStrideB, ps = k * VL;
    if (prefetchA) {
        if (width > 2 * VL) {
            TILE512_SOURCES(3, 1)
        } else if (width > VL) {
            TILE512_SOURCES(2, 1)
        } else {
            TILE512_SOURCES(1, 1)
        }
    } else if (width > 2 * VL) {
        TILE512_SOURCES(3, 0)
    } else if (width > VL) {
        TILE512_SOURCES(2, 0)
    } else {
        TILE512_SOURCES(1, 0)
    }
}

/// C's last `nc` (1...4) columns for `height` (1...48) rows, when A is a transposed view (its
/// rows, C's rows, lie contiguous in memory: `xᵀ` in `w.g = xᵀ • out.g`): vectors run down C's
/// columns, 16 rows each, so no lane is wasted on the columns a 16-wide tile would leave empty.
/// Each element is the same chain as in `tile512` (bias or zero, then p = 0, 1, …, then C), so
/// the same bits. B's element `(p, j)` is `b[p * rsB + j * csB]`.
INLINE TARGET512 void columnTail512(const int nc, long height, long k, const float *a, long csA, const float *b,
    long rsB, long csB, float *c, long ldc, const float *bias, int accumulate)
{
    __m512 acc[NV_WIDE][DOT_COLUMNS];
    __mmask16 masks[NV_WIDE];
    for (int v = 0; v < NV_WIDE; v++) {
        const long rows = height - v * VL;
        masks[v] = rows <= 0 ? (__mmask16)0 : lanes16(rows);
    }
    for (int j = 0; j < nc; j++) {
        const __m512 start = bias ? _mm512_set1_ps(bias[j]) : _mm512_setzero_ps();
        for (int v = 0; v < NV_WIDE; v++) acc[v][j] = start;
    }
    for (long p = 0; p < k; p++) {
        __m512 x[NV_WIDE];
        for (int v = 0; v < NV_WIDE; v++) x[v] = _mm512_maskz_loadu_ps(masks[v], a + p * csA + v * VL);
        for (int j = 0; j < nc; j++) {
            const __m512 bj = _mm512_set1_ps(b[p * rsB + j * csB]);
            for (int v = 0; v < NV_WIDE; v++) acc[v][j] = _mm512_fmadd_ps(x[v], bj, acc[v][j]);
        }
    }
    float column[NV_WIDE * VL];
    for (int j = 0; j < nc; j++) {
        for (int v = 0; v < NV_WIDE; v++) _mm512_storeu_ps(column + v * VL, acc[v][j]);
        for (long r = 0; r < height; r++) {
            float *target = c + r * ldc + j;
            *target = accumulate ? column[r] + *target : column[r];
        }
    }
}

/// `columnTail512` for `columns` (1...4) columns, specialised for each count.
static TARGET512 void columnTailAVX512(int columns, long height, long k, const float *a, long csA, const float *b,
    long rsB, long csB, float *c, long ldc, const float *bias, int accumulate)
{
    switch (columns) {
    case 4: columnTail512(4, height, k, a, csA, b, rsB, csB, c, ldc, bias, accumulate); break;
    case 3: columnTail512(3, height, k, a, csA, b, rsB, csB, c, ldc, bias, accumulate); break;
    case 2: columnTail512(2, height, k, a, csA, b, rsB, csB, c, ldc, bias, accumulate); break;
    default: columnTail512(1, height, k, a, csA, b, rsB, csB, c, ldc, bias, accumulate); break;
    }
}

/// One tile of T: 5 rows × `nv` vectors (1...3) of 16 columns; `width` (1...48) columns of x are
/// read and written (the lanes past it are left alone).
INLINE TARGET512 void tnTile512(const int nv, long width, long kb, const float *a, long lda, const float *g, float *t,
    long ldt)
{
    const __mmask16 last = lanes16(width - (nv - 1) * VL);
    __m512 acc[TN_COLUMNS][NV_WIDE];
    for (int r = 0; r < TN_COLUMNS; r++) {
        for (int v = 0; v < nv; v++) {
            acc[r][v] = _mm512_maskz_loadu_ps(v == nv - 1 ? last : (__mmask16)0xFFFF, t + r * ldt + v * VL);
        }
    }
    for (long p = 0; p < kb; p++) {
        const float *row = a + p * lda;
        __m512 x[NV_WIDE];
        for (int v = 0; v < nv; v++) x[v] = _mm512_maskz_loadu_ps(v == nv - 1 ? last : (__mmask16)0xFFFF, row + v * VL);
        const float *gp = g + p * TN_COLUMNS;
        for (int r = 0; r < TN_COLUMNS; r++) {
            const __m512 gv = _mm512_set1_ps(gp[r]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(x[v], gv, acc[r][v]);
        }
    }
    for (int r = 0; r < TN_COLUMNS; r++) {
        for (int v = 0; v < nv; v++) {
            _mm512_mask_storeu_ps(t + r * ldt + v * VL, v == nv - 1 ? last : (__mmask16)0xFFFF, acc[r][v]);
        }
    }
}

/// One tile of T, `width` (1...48) columns of x: `tnTile512` specialised for it.
static TARGET512 void tnTileAVX512(long width, long kb, const float *a, long lda, const float *g, float *t, long ldt) {
    if (width > 2 * VL) {
        tnTile512(3, width, kb, a, lda, g, t, ldt);
    } else if (width > VL) {
        tnTile512(2, width, kb, a, lda, g, t, ldt);
    } else {
        tnTile512(1, width, kb, a, lda, g, t, ldt);
    }
}

// MARK: The drivers, for either instruction set

/// What differs between the AVX2 and the AVX-512 products; the drivers below do the rest the same
/// way, so that each element is the same sum in the same order in both.
typedef struct GemmVariant {
    /// Columns per tile (16 or 48) and the alignment, in floats, that non-temporal stores need.
    long tileColumns, streamAlignment;
    /// The floats `pack` writes for `k` rows and `width` columns of B, and the packing itself.
    long (*packedCount)(long k, long width);
    void (*pack)(long k, long width, const float *b, long rowStride, long columnStride, float *packed);
    /// One tile of C (`anyTile`, `anyTile512`).
    void (*tile)(int inPlace, int mr, long width, long k, const float *a, long rsA, long csA, const float *b,
        long rowStrideB, float *c, long ldc, const float *bias, int accumulate, int streaming, int prefetchA);
    /// A transposed A's last 1...4 columns as vectors down C's columns (`columnTailAVX2`,
    /// `columnTailAVX512`), for at most `columnTailRows` rows of C a call.
    void (*columnTail)(int columns, long height, long k, const float *a, long csA, const float *b, long rsB,
        long csB, float *c, long ldc, const float *bias, int accumulate);
    long columnTailRows;
    /// `xᵀ • B`: T's tile (`tnTileAVX2`, `tnTileAVX512`), its columns, and rows of x per block.
    void (*tnTile)(long width, long kb, const float *a, long lda, const float *g, float *t, long ldt);
    long tnTileColumns, tnBlock;
    /// Calls with at most this many rows of C read a row-major B in place (`IN_PLACE_ROWS_*`).
    long inPlaceRows;
    /// Nonzero: a B read in place still has its last panel packed when that panel ends inside a
    /// vector. AVX2 would load the panel's last vector through a mask at every step of k, and a
    /// masked load costs Zen 1 5.7-8 times a plain one (`Benchmarks/masked_loads.sh`); AVX-512's
    /// masked loads cost what plain ones do.
    int packsPartialPanel;
} GemmVariant;

static const GemmVariant avx2Variant = {
    NR, 8, packedCount, packB, anyTile, columnTailAVX2, TAIL_ROWS, tnTileAVX2, NR, TN_BLOCK, IN_PLACE_ROWS_AVX2, 1};
static const GemmVariant avx512Variant = {NR_WIDE, VL, packedCount16, packB16, anyTile512, columnTailAVX512, NR_WIDE,
    tnTileAVX512, NR_WIDE, TN_BLOCK_WIDE, IN_PLACE_ROWS_AVX512, 0};

/// Rows `[rowBegin, rowEnd)` and columns `[columnBegin, columnEnd)` of C, with `v`'s tiles.
static void gemmRange(const GemmVariant *v, const BPGemm *g, long rowBegin, long rowEnd, long columnBegin,
    long columnEnd)
{
    const long k = g->k, columns = columnEnd - columnBegin, rows = rowEnd - rowBegin;
    if (rows <= 0 || columns <= 0) return;
    const long kcMax = k <= KC_WHOLE ? k : KC, nr = v->tileColumns, align = v->streamAlignment;
    // Rows outer when C is tall (A streams through once, B stays in cache); columns outer when
    // C is wide (B streams, A stays).
    const int rowsOuter = rows >= columns;
    const int streaming = g->streaming && (uintptr_t)g->c % (uintptr_t)(align * 4) == 0 && g->ldc % align == 0
        && columnBegin % align == 0 && kcMax == k;
    // The last few columns of C as dot products: when A's rows are contiguous and read whole (no
    // blocks of k), C is tall, and a narrow last panel would waste most of its lanes. Dot products
    // add in another order than the tiles, so this is decided on the whole product, never on this
    // range: however C is cut over the threads, each element is the same sum.
    const long productTail = g->columnStrideA == 1 && kcMax == k && g->m >= g->n && g->n % NR <= DOT_COLUMNS
        ? g->n % NR : 0;
    const long tailStart = g->n - productTail, tailBegin = columnBegin > tailStart ? columnBegin : tailStart;
    const long tail = productTail > 0 && columnEnd > tailBegin ? columnEnd - tailBegin : 0;
    // Or, when A is transposed (C's rows contiguous in it), the same few columns as vectors down
    // C's columns (`columnTail`), after the tiles (the same bits as a tile's).
    const long rowTail = tail == 0 && g->rowStrideA == 1 && g->columnStrideA != 1
        && kcMax == k && columns % NR <= DOT_COLUMNS ? columns % NR : 0;
    const long panelColumns = columns - tail - rowTail, ldw = (k + 7) / 8 * 8;
    const long rowTiles = (rows + MR - 1) / MR, columnTiles = panelColumns > 0 ? (panelColumns + nr - 1) / nr : 1;
    // B is packed when it is used by many tiles; for a few rows of C (a minibatch) packing would
    // cost more than it saves, and a row-major B is read in place.
    const int inPlace = g->columnStrideB == 1 && kcMax == k && rows <= v->inPlaceRows;
    const long packedSize = inPlace ? 0 : v->packedCount(kcMax, panelColumns);
    // In place, a last panel that ends inside a vector is packed all the same (`packsPartialPanel`;
    // the same bits either way). It is the last: C's pieces are cut at whole panels.
    const long lastWidth = panelColumns % nr;
    const int packLast = inPlace && v->packsPartialPanel && lastWidth % 8 != 0;
    const long lastSize = packLast ? v->packedCount(k, lastWidth) : 0;
    // (The dot products' columns start aligned: `packedSize` and `lastSize` are multiples of 8.)
    float *packed = scratch(packedSize + lastSize + tail * ldw);
    float *packedLast = packed + packedSize;
    float *packedTail = packedLast + lastSize;
    for (long j = 0; j < tail; j++) {
        const float *source = g->b + (tailBegin + j) * g->columnStrideB;
        for (long p = 0; p < ldw; p++) packedTail[j * ldw + p] = p < k ? source[p * g->rowStrideB] : 0;
    }
    const long panelEnd = columnBegin + panelColumns;
    if (packLast) v->pack(k, lastWidth, g->b + panelEnd - lastWidth, g->rowStrideB, 1, packedLast);
    const long rsA = g->rowStrideA, csA = g->columnStrideA, ldc = g->ldc;
    for (long pc = 0; pc < k; pc += kcMax) {
        const long kc = k - pc < kcMax ? k - pc : kcMax;
        const int accumulate = g->accumulate || pc > 0;
        const float *biasBlock = pc == 0 ? g->bias : NULL;
        const float *aBlock = g->a + pc * csA;
        if (!inPlace) {
            v->pack(kc, panelColumns, g->b + pc * g->rowStrideB + columnBegin * g->columnStrideB, g->rowStrideB,
                g->columnStrideB, packed);
        }
        // A transposed view (A = xᵀ): its next block of KC columns is the next KC rows of x.
        Prefetcher next = {0, 0, 0, 0, 0, 0};
        long linesPerTile = 0;
        // (Only when A is larger than the L2 cache: a small A, a minibatch, is in the caches.)
        const int prefetchA = rows * kcMax * (long)sizeof(float) > (512L << 10);
        // A row-major (A = x): the tiles prefetch its rows themselves (`PREFETCH_A_ROWS`).
        const int prefetchRows = prefetchA && csA == 1;
        if (prefetchA && rsA == 1 && pc + kc < k) {
            const long nextKc = k - pc - kc < kcMax ? k - pc - kc : kcMax;
            next = (Prefetcher){(const char *)(g->a + (pc + kc) * csA + rowBegin), nextKc, csA * 4, rows * 4, 0, 0};
            linesPerTile = nextKc * (rows * 4 / 64 + 1) / (rowTiles * columnTiles) + 1;
        }
        if (rowsOuter) {
            for (long i = rowBegin; i < rowEnd; i += MR) {
                const int mr = rowEnd - i < MR ? (int)(rowEnd - i) : MR;
                for (long j = columnBegin; j < panelEnd; j += nr) {
                    const long width = panelEnd - j < nr ? panelEnd - j : nr;
                    const int packedHere = packLast && width == lastWidth;
                    const float *panel = packedHere ? packedLast : inPlace ? g->b + j : packed + (j - columnBegin) * kc;
                    prefetchLines(&next, linesPerTile, 0);
                    v->tile(inPlace && !packedHere, mr, width, kc, aBlock + i * rsA, rsA, csA, panel, g->rowStrideB,
                        g->c + i * ldc + j, ldc, biasBlock ? biasBlock + j : NULL, accumulate, streaming,
                        prefetchRows);
                }
                if (tail > 0) {
                    dotColumns(mr, tail, k, aBlock + i * rsA, rsA, packedTail, ldw, g->c + i * ldc + panelEnd, ldc,
                        g->bias ? g->bias + panelEnd : NULL, g->accumulate);
                }
            }
        } else {
            for (long i = rowBegin; i < rowEnd && tail > 0; i += MR) {
                const int mr = rowEnd - i < MR ? (int)(rowEnd - i) : MR;
                dotColumns(mr, tail, k, aBlock + i * rsA, rsA, packedTail, ldw, g->c + i * ldc + panelEnd, ldc,
                    g->bias ? g->bias + panelEnd : NULL, g->accumulate);
            }
            for (long j = columnBegin; j < panelEnd; j += nr) {
                const long width = panelEnd - j < nr ? panelEnd - j : nr;
                const int packedHere = packLast && width == lastWidth;
                const float *panel = packedHere ? packedLast : inPlace ? g->b + j : packed + (j - columnBegin) * kc;
                // A B read in place is a panel of k strided lines: while this panel's row tiles
                // run, the next panel's lines are fetched into L2, a share per tile.
                Prefetcher nextPanel = {0, 0, 0, 0, 0, 0};
                long panelLinesPerTile = 0;
                if (inPlace && j + nr < panelEnd) {
                    const long nextWidth = panelEnd - j - nr < nr ? panelEnd - j - nr : nr;
                    nextPanel = (Prefetcher){(const char *)(g->b + j + nr), k, g->rowStrideB * 4, nextWidth * 4, 0, 0};
                    panelLinesPerTile = (k * ((nextWidth * 4 + 63) / 64) + rowTiles - 1) / rowTiles;
                }
                for (long i = rowBegin; i < rowEnd; i += MR) {
                    const int mr = rowEnd - i < MR ? (int)(rowEnd - i) : MR;
                    prefetchLines(&next, linesPerTile, 0);
                    prefetchLines(&nextPanel, panelLinesPerTile, 1);
                    v->tile(inPlace && !packedHere, mr, width, kc, aBlock + i * rsA, rsA, csA, panel, g->rowStrideB,
                        g->c + i * ldc + j, ldc, biasBlock ? biasBlock + j : NULL, accumulate, streaming,
                        prefetchRows);
                }
            }
        }
    }
    if (rowTail > 0) {
        const long j = columnBegin + panelColumns;
        const long step = v->columnTailRows;
        for (long i = rowBegin; i < rowEnd; i += step) {
            const long height = rowEnd - i < step ? rowEnd - i : step;
            v->columnTail((int)rowTail, height, k, g->a + i, g->columnStrideA, g->b + j * g->columnStrideB,
                g->rowStrideB, g->columnStrideB, g->c + i * ldc + j, ldc, g->bias ? g->bias + j : NULL, g->accumulate);
        }
    }
    if (streaming) _mm_sfence();
}

void bp_gemm_avx2(const BPGemm *g, long rowBegin, long rowEnd, long columnBegin, long columnEnd) {
    gemmRange(&avx2Variant, g, rowBegin, rowEnd, columnBegin, columnEnd);
}

void bp_gemm_avx512(const BPGemm *g, long rowBegin, long rowEnd, long columnBegin, long columnEnd) {
    gemmRange(&avx512Variant, g, rowBegin, rowEnd, columnBegin, columnEnd);
}

/// `T = Cᵀ` for `C = xᵀ • B` (see `bp_gemm_tn_avx2`), with `v`'s tiles.
static void gemmTN(const GemmVariant *v, long m, long n, long k, const float *a, long lda, const float *b,
    long rowStrideB, long columnStrideB, float *t, long ldt)
{
    const long tiles = bp_gemm_tn_rows(n) / TN_COLUMNS, paddedColumns = bp_gemm_tn_columns(m);
    for (long j = 0; j < tiles * TN_COLUMNS; j++) {
        for (long i = 0; i < paddedColumns; i++) t[j * ldt + i] = 0;
    }
    if (m <= 0 || n <= 0) return;
    const long block = v->tnBlock, width = v->tnTileColumns, columnTiles = (m + width - 1) / width;
    float *packed = scratch(tiles * TN_COLUMNS * block);
    for (long p0 = 0; p0 < k; p0 += block) {
        const long kb = k - p0 < block ? k - p0 : block;
        packTN(tiles, kb, b + p0 * rowStrideB, rowStrideB, columnStrideB, n, packed);
        // The next block of rows of A arrives while this one is used, and so does B's when its rows
        // lie contiguous (the seed's `out.g`, which comes from memory too: packed on demand, it
        // stalled on every line, and the product took 2% longer on one Zen 4 core).
        Prefetcher next = {0, 0, 0, 0, 0, 0}, nextB = {0, 0, 0, 0, 0, 0};
        long linesPerTile = 0, linesOfBPerTile = 0;
        if (p0 + kb < k) {
            const long nextKb = k - p0 - kb < block ? k - p0 - kb : block;
            next = (Prefetcher){(const char *)(a + (p0 + kb) * lda), nextKb, lda * 4, m * 4, 0, 0};
            linesPerTile = nextKb * (m * 4 / 64 + 1) / (tiles * columnTiles) + 1;
            if (columnStrideB == 1) {
                nextB = (Prefetcher){(const char *)(b + (p0 + kb) * rowStrideB), nextKb, rowStrideB * 4, n * 4, 0, 0};
                linesOfBPerTile = nextKb * (n * 4 / 64 + 1) / (tiles * columnTiles) + 1;
            }
        }
        const float *rows = a + p0 * lda;
        for (long i0 = 0; i0 < m; i0 += width) {
            const long columns = m - i0 < width ? m - i0 : width;
            for (long q = 0; q < tiles; q++) {
                prefetchLines(&next, linesPerTile, 0);
                prefetchLines(&nextB, linesOfBPerTile, 0);
                v->tnTile(columns, kb, rows + i0, lda, packed + q * kb * TN_COLUMNS, t + q * TN_COLUMNS * ldt + i0, ldt);
            }
        }
    }
}

void bp_gemm_tn_avx2(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt)
{
    gemmTN(&avx2Variant, m, n, k, a, lda, b, rowStrideB, columnStrideB, t, ldt);
}

void bp_gemm_tn_avx512(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt)
{
    gemmTN(&avx512Variant, m, n, k, a, lda, b, rowStrideB, columnStrideB, t, ldt);
}

#else

long bp_gemm_tn_rows(long n) { return n; }

long bp_gemm_tn_columns(long m) { return m; }

void bp_gemm_tn_avx2(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt)
{
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)rowStrideB, (void)columnStrideB, (void)t, (void)ldt;
    abort();
}

int bp_gemm_avx2_available(void) { return 0; }

void bp_gemm_avx2(const BPGemm *g, long rowBegin, long rowEnd, long columnBegin, long columnEnd) {
    (void)g, (void)rowBegin, (void)rowEnd, (void)columnBegin, (void)columnEnd;
    abort();
}

int bp_gemm_avx512_available(void) { return 0; }

void bp_kernels_allow_avx512(int allowed) { (void)allowed; }

int bp_kernels_use_avx512(void) { return 0; }

void bp_gemm_avx512(const BPGemm *g, long rowBegin, long rowEnd, long columnBegin, long columnEnd) {
    (void)g, (void)rowBegin, (void)rowEnd, (void)columnBegin, (void)columnEnd;
    abort();
}

void bp_gemm_tn_avx512(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt)
{
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)rowStrideB, (void)columnStrideB, (void)t, (void)ldt;
    abort();
}

#endif
