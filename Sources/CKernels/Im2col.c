// Sliding-window kernels over NCHW images: im2col (unfold), col2im (fold), and pooling.
//
// Each is a few nested loops over memory that the caller splits over threads by ranges of
// independent work (lines of windows, images, planes). They are memory-bound: the point of C
// here is that the innermost copy of a kernel row (`kw` elements, 3 for the usual 3 × 3 kernel)
// is compiled for its constant width, without a call or a per-element bounds check, and that
// max pooling compares without branches (random data would mispredict every other one).
// Pooling over overlapping windows reads each element several times from the cache, so there
// AVX2 takes eight windows of a row at once, each lane computing exactly what the plain loop does.
//
// The plain Swift loops they are tested against are `Tensor.referenceUnfold` and
// `Tensor.referenceFold` (Tensor+Convolution.swift); the pooling layers are tested against
// direct loops and the recorded composition `unfold` then `max` or `mean`.

#include "CKernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

// MARK: - im2col

/// Copies image `img` of `x` into `padded` (`[c, h + 2 ph, w + 2 pw]`, whose borders are zero).
INLINE void padImage(const float *restrict x, float *restrict padded, const BPWindow *g, long img) {
    const long c = g->c, h = g->h, w = g->w, paddedWidth = w + 2 * g->pw;
    const long paddedPlane = (h + 2 * g->ph) * paddedWidth;
    for (long ch = 0; ch < c; ch++) {
        const float *source = x + (img * c + ch) * h * w;
        float *row = padded + ch * paddedPlane + g->ph * paddedWidth + g->pw;
        for (long iy = 0; iy < h; iy++, source += w, row += paddedWidth) memcpy(row, source, (size_t)w * sizeof(float));
    }
}

/// Lines `[lineBegin, lineEnd)`, each `(img, oy)`: rows `(img, oy, 0..<ow)` of `cols`, `kw` a
/// constant where the caller inlines it.
///
/// Each image is first copied into `padded` with the padding's zeros around it: then every
/// window row is a plain copy of `kw` values, without a bounds check, and `cols` is written in
/// order.
INLINE void im2colLines(const float *restrict x, float *restrict cols, const BPWindow *g, long lineBegin,
    long lineEnd, float *restrict padded, long kw) {
    const long c = g->c, kh = g->kh, oh = g->oh, ow = g->ow, sh = g->sh, sw = g->sw;
    const long paddedWidth = g->w + 2 * g->pw, paddedPlane = (g->h + 2 * g->ph) * paddedWidth;
    long paddedImage = -1;
    float *d = cols + lineBegin * ow * c * kh * kw;
    for (long line = lineBegin; line < lineEnd; line++) {
        const long img = line / oh, oy = line % oh;
        if (img != paddedImage) {
            padImage(x, padded, g, img);
            paddedImage = img;
        }
        for (long ox = 0; ox < ow; ox++) {
            const float *corner = padded + oy * sh * paddedWidth + ox * sw;
            for (long ch = 0; ch < c; ch++) {
                const float *s = corner + ch * paddedPlane;
                for (long ky = 0; ky < kh; ky++, d += kw, s += paddedWidth) {
                    for (long kx = 0; kx < kw; kx++) d[kx] = s[kx];
                }
            }
        }
    }
}

void bp_im2col(const float *x, float *cols, const BPWindow *g, long lineBegin, long lineEnd) {
    const long paddedCount = g->c * (g->h + 2 * g->ph) * (g->w + 2 * g->pw);
    float *padded = calloc((size_t)paddedCount, sizeof(float));
    if (padded == NULL) bp_out_of_memory(paddedCount * (long)sizeof(float), "a padded image to unfold (im2col)");
    switch (g->kw) {
    case 1: im2colLines(x, cols, g, lineBegin, lineEnd, padded, 1); break;
    case 2: im2colLines(x, cols, g, lineBegin, lineEnd, padded, 2); break;
    case 3: im2colLines(x, cols, g, lineBegin, lineEnd, padded, 3); break;
    case 5: im2colLines(x, cols, g, lineBegin, lineEnd, padded, 5); break;
    default: im2colLines(x, cols, g, lineBegin, lineEnd, padded, g->kw); break;
    }
    free(padded);
}

// MARK: - col2im

/// Images `[imageBegin, imageEnd)` of `y`, `kw` a constant where the caller inlines it.
///
/// Each image is summed in `padded` (`[c, h + 2 ph, w + 2 pw]`, zeroed): every window's row of
/// `cols` is added, in row order, at its place without a bounds check; then the inner `[h, w]`
/// of each channel is copied out (the padding's sums are dropped). The image stays in the cache
/// while its rows of `cols` stream past.
INLINE void col2imImages(const float *restrict cols, float *restrict y, const BPWindow *g, long imageBegin,
    long imageEnd, float *restrict padded, long kw) {
    const long c = g->c, h = g->h, w = g->w, kh = g->kh, oh = g->oh, ow = g->ow, sh = g->sh, sw = g->sw;
    const long ph = g->ph, pw = g->pw;
    const long paddedWidth = w + 2 * pw, paddedPlane = (h + 2 * ph) * paddedWidth;
    for (long img = imageBegin; img < imageEnd; img++) {
        memset(padded, 0, (size_t)(c * paddedPlane) * sizeof(float));
        const float *s = cols + img * oh * ow * c * kh * kw;
        for (long oy = 0; oy < oh; oy++) {
            for (long ox = 0; ox < ow; ox++) {
                float *corner = padded + oy * sh * paddedWidth + ox * sw;
                for (long ch = 0; ch < c; ch++) {
                    for (long ky = 0; ky < kh; ky++, s += kw) {
                        float *d = corner + ch * paddedPlane + ky * paddedWidth;
                        for (long kx = 0; kx < kw; kx++) d[kx] += s[kx];
                    }
                }
            }
        }
        float *image = y + img * c * h * w;
        for (long ch = 0; ch < c; ch++) {
            for (long iy = 0; iy < h; iy++) {
                memcpy(image + (ch * h + iy) * w, padded + ch * paddedPlane + (iy + ph) * paddedWidth + pw,
                    (size_t)w * sizeof(float));
            }
        }
    }
}

void bp_col2im(const float *cols, float *y, const BPWindow *g, long imageBegin, long imageEnd) {
    const long paddedCount = g->c * (g->h + 2 * g->ph) * (g->w + 2 * g->pw);
    float *padded = malloc((size_t)paddedCount * sizeof(float));
    if (padded == NULL) bp_out_of_memory(paddedCount * (long)sizeof(float), "a padded image to fold (col2im)");
    switch (g->kw) {
    case 1: col2imImages(cols, y, g, imageBegin, imageEnd, padded, 1); break;
    case 2: col2imImages(cols, y, g, imageBegin, imageEnd, padded, 2); break;
    case 3: col2imImages(cols, y, g, imageBegin, imageEnd, padded, 3); break;
    case 5: col2imImages(cols, y, g, imageBegin, imageEnd, padded, 5); break;
    default: col2imImages(cols, y, g, imageBegin, imageEnd, padded, g->kw); break;
    }
    free(padded);
}

/// col2im from the planar layout: `d` holds one image's window gradients as `(c·kh·kw)` rows of
/// `oh·ow` values, `ld` apart (PyTorch's `F.fold` input for one image); `y` (`[c, h, w]`) is set
/// to their sums. Row `(ch, ky, kx)` adds to `y[ch, oy·sh − ph + ky, ox·sw − pw + kx]` for every
/// `(oy, ox)` inside the image: with stride 1, a run of `ow` values added to a run of a row of `y`.
void bp_col2im_planar(const float *d, long ld, float *y, const BPWindow *g) {
    const long c = g->c, h = g->h, w = g->w, kh = g->kh, kw = g->kw, sh = g->sh, sw = g->sw;
    const long ph = g->ph, pw = g->pw, oh = g->oh, ow = g->ow;
    memset(y, 0, (size_t)(c * h * w) * sizeof(float));
    for (long ch = 0; ch < c; ch++) {
        for (long ky = 0; ky < kh; ky++) {
            for (long kx = 0; kx < kw; kx++) {
                const float *row = d + ((ch * kh + ky) * kw + kx) * ld;
                // The outputs whose column ix = ox·sw − pw + kx lies in [0, w).
                long first = pw - kx > 0 ? (pw - kx + sw - 1) / sw : 0;
                long last = (w - 1 + pw - kx) >= 0 ? (w - 1 + pw - kx) / sw + 1 : 0;
                if (last > ow) last = ow;
                for (long oy = 0; oy < oh; oy++) {
                    const long iy = oy * sh - ph + ky;
                    if (iy < 0 || iy >= h) continue;
                    const float *restrict source = row + oy * ow;
                    float *restrict target = y + (ch * h + iy) * w;
                    const long shift = kx - pw;  // ix = ox·sw + shift
                    if (sw == 1) {
                        for (long ox = first; ox < last; ox++) target[ox + shift] += source[ox];
                    } else {
                        for (long ox = first; ox < last; ox++) target[ox * sw + shift] += source[ox];
                    }
                }
            }
        }
    }
}

// MARK: - Scratch

float *bp_thread_scratch(long count) {
    static _Thread_local float *buffer = NULL;
    static _Thread_local long capacity = 0;
    if (count > capacity) {
        free(buffer);
        const long rounded = (count + 4095) & ~4095L;
        buffer = aligned_alloc(64, (size_t)rounded * sizeof(float));
        capacity = buffer ? rounded : 0;
        bp_free_at_thread_exit(BP_THREAD_BUFFER_SCRATCH, buffer);
    }
    return buffer;
}

// MARK: - Pooling

/// Max pooling of planes `[planeBegin, planeEnd)`, `k` a constant where the caller inlines it.
INLINE void maxPoolPlane(const float *restrict x, float *restrict out, int *restrict winners, int *restrict pieces,
    const BPWindow *g, long plane, long k) {
    const long h = g->h, w = g->w, s = g->sh, oh = g->oh, ow = g->ow;
    const float *input = x + plane * h * w;
    const long first = plane * oh * ow;
    for (long oy = 0; oy < oh; oy++) {
        for (long ox = 0; ox < ow; ox++) {
            const long corner = oy * s * w + ox * s;
            const float *window = input + corner;
            // The maximum, then the first element (row-major) that equals it and how many do:
            // two passes over a few values in registers, compiled to selects, not branches
            // (random data would mispredict every other branch). A NaN wins, the last one of the
            // window if several, as in PyTorch's `max_pool2d` (`val > maxval || isnan(val)`).
            float best = window[0];
            for (long ky = 0; ky < k; ky++)
                for (long kx = 0; kx < k; kx++) {
                    const float v = window[ky * w + kx];
                    best = (v > best || v != v) ? v : best;
                }
            int at = 0, hits = 0, lastNaN = -1;
            for (long i = k * k - 1; i >= 0; i--) {
                const float v = window[(i / k) * w + i % k];
                const int hit = v == best;
                at = hit ? (int)i : at;
                hits += hit;
                lastNaN = (v != v && lastNaN < 0) ? (int)i : lastNaN;
            }
            // A NaN has no derivative: its window is marked as a tie is.
            if (lastNaN >= 0) at = lastNaN, hits = 2;
            const long o = first + oy * ow + ox;
            out[o] = best;
            winners[o] = (int)(corner + (at / k) * w + at % k);
            pieces[o] = hits > 1 ? -1 : at;
        }
    }
}

/// The rows `[y0, y1)` and columns `[x0, x1)` of the plane that a padded pool's window covers.
typedef struct {
    long y0, y1, x0, x1;
} ClippedWindow;

/// Window `(oy, ox)` of `g` clipped to the plane, its corner at `(oy · sh - ph, ox · sw - pw)`: the
/// padding takes no part.
static inline ClippedWindow clippedWindow(const BPWindow *g, long oy, long ox) {
    const long top = oy * g->sh - g->ph, left = ox * g->sw - g->pw;
    return (ClippedWindow){top > 0 ? top : 0, top + g->kh < g->h ? top + g->kh : g->h, left > 0 ? left : 0,
        left + g->kw < g->w ? left + g->kw : g->w};
}

/// What turns a mean over `k²` into one over the clipped window's elements: `k² / count`, as a
/// Float (1 for a window inside the plane).
static inline float windowFactor(ClippedWindow c, long k) {
    return (float)((double)k * (double)k / (double)((c.y1 - c.y0) * (c.x1 - c.x0)));
}

/// One output of max pooling, `o` = window `(oy, ox)` of the plane at `input`, clipped to the
/// plane, as PyTorch's kernel does (its padding is -inf that never wins; a window of -inf's goes to
/// its first element in the plane, not to the padding). Otherwise as `maxPoolPlane`: a NaN wins, the
/// last of the window, and the first element equal to the maximum takes the gradient; the piece is
/// the winner's offset in the whole window, padding included (`ky · k + kx`).
static inline void maxPoolOne(const float *restrict input, float *restrict out, int *restrict winners,
    int *restrict pieces, const BPWindow *g, long o, long oy, long ox) {
    const long w = g->w, k = g->kh, s = g->sh, p = g->ph;
    const ClippedWindow c = clippedWindow(g, oy, ox);
    const long y0 = c.y0, y1 = c.y1, x0 = c.x0, x1 = c.x1;
    float best = input[y0 * w + x0];
    for (long iy = y0; iy < y1; iy++)
        for (long ix = x0; ix < x1; ix++) {
            const float v = input[iy * w + ix];
            best = (v > best || v != v) ? v : best;
        }
    long at = y0 * w + x0, lastNaN = -1;
    int hits = 0;
    for (long iy = y1 - 1; iy >= y0; iy--)
        for (long ix = x1 - 1; ix >= x0; ix--) {
            const float v = input[iy * w + ix];
            const int hit = v == best;
            at = hit ? iy * w + ix : at;
            hits += hit;
            lastNaN = (v != v && lastNaN < 0) ? iy * w + ix : lastNaN;
        }
    if (lastNaN >= 0) at = lastNaN, hits = 2;
    out[o] = best;
    winners[o] = (int)at;
    pieces[o] = hits > 1 ? -1 : (int)((at / w - (oy * s - p)) * k + (at % w - (ox * s - p)));
}

/// Max pooling of one plane with padding: `maxPoolOne` for each output.
static void maxPoolPlanePadded(const float *restrict x, float *restrict out, int *restrict winners,
    int *restrict pieces, const BPWindow *g, long plane) {
    const float *input = x + plane * g->h * g->w;
    const long first = plane * g->oh * g->ow;
    for (long oy = 0; oy < g->oh; oy++)
        for (long ox = 0; ox < g->ow; ox++) maxPoolOne(input, out, winners, pieces, g, first + oy * g->ow + ox, oy, ox);
}

/// The columns of windows `[left, right)` that lie inside the plane (no padding in them): where the
/// vector kernels run. Empty when no window does.
static inline void insideColumns(const BPWindow *g, long *left, long *right) {
    const long s = g->sw, p = g->pw, k = g->kw;
    *left = (p + s - 1) / s;
    *right = g->w + p - k < 0 ? 0 : (g->w + p - k) / s + 1;
    if (*right > g->ow) *right = g->ow;
    if (*left > *right) *left = *right;
}

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#define TARGET_AVX2 __attribute__((target("avx2,fma")))

/// The even and odd elements of `x[0..<2 * count]` (`count` ≤ 8), each as one vector in order.
/// With `whole` (the caller knows `x[0..<16]` lies in its buffer) it reads 16 values, and lanes
/// past `count` hold whatever follows; else it reads nothing past `x[2 * count - 1]` and those
/// lanes are 0.
static inline TARGET_AVX2 __attribute__((always_inline)) void evenOdd(const float *x, long count, int whole,
    __m256 *even, __m256 *odd) {
    static const int32_t lanes[24] = {-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
        0, 0, 0, 0, 0, 0, 0, 0};
    __m256 low, high;
    if (count == 8 || whole) {
        low = _mm256_loadu_ps(x);
        high = _mm256_loadu_ps(x + 8);
    } else {
        // The first 2·count lanes of the two vectors, through masks.
        low = _mm256_maskload_ps(x, _mm256_loadu_si256((const __m256i *)(lanes + 16 - 2 * count)));
        const long rest = 2 * count > 8 ? 2 * count - 8 : 0;
        high = _mm256_maskload_ps(x + 8, _mm256_loadu_si256((const __m256i *)(lanes + 16 - rest)));
    }
    // shuffle_ps picks within 128-bit halves: [l0 l2 h0 h2 | l4 l6 h4 h6]; then put the 64-bit
    // pairs in order: [l0 l2 l4 l6 h0 h2 h4 h6].
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(low, high, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(low, high, 0xDD)), 0xD8));
}

/// Stores the first `count` lanes of `lanes` (32-bit values: floats or ints) as elements `o..<o +
/// count` of `base`: the whole vector where the plane (whose outputs end at `planeEnd`) has outputs
/// after them, which are written later; else through memory, as masked stores run slowly on AMD's
/// cores.
static inline TARGET_AVX2 __attribute__((always_inline)) void storeLanes(
    void *base, long o, long count, long planeEnd, __m256i lanes) {
    char *at = (char *)base + 4 * o;
    if (o + 8 <= planeEnd) {
        _mm256_storeu_si256((__m256i *)at, lanes);
    } else {
        int32_t values[8];
        _mm256_storeu_si256((__m256i *)values, lanes);
        memcpy(at, values, (size_t)count * 4);
    }
}

/// 2 × 2 windows at stride 2, eight outputs at a time: the same results as `maxPoolPlane` (the
/// maximum by `v > best`, the first equal element row-major, -1 at a tie), with vector selects.
static TARGET_AVX2 void maxPool2x2Plane(const float *restrict x, float *restrict out, int *restrict winners,
    int *restrict pieces, const BPWindow *g, long plane) {
    const long h = g->h, w = g->w, oh = g->oh, ow = g->ow;
    const float *input = x + plane * h * w;
    const long first = plane * oh * ow;
    // Masked loads cost Zen 1 5.7-8 times plain ones (`Benchmarks/masked_loads.sh`; the 14-wide
    // planes' pooling, masked on every row, took 2.3 times as long), so a short vector at a row's
    // end reads on into the rows that follow, while they lie in the input (of `total` values); its
    // extra lanes are never stored as outputs (below).
    const long total = g->n * g->c * h * w;
    const __m256i laneIndex = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (long oy = 0; oy < oh; oy++) {
        const float *top = input + 2 * oy * w, *bottom = top + w;
        for (long ox = 0; ox < ow; ox += 8) {
            const long count = ow - ox < 8 ? ow - ox : 8;
            const int whole = (bottom - x) + 2 * ox + 16 <= total;
            __m256 v[4];
            evenOdd(top + 2 * ox, count, whole, &v[0], &v[1]);
            evenOdd(bottom + 2 * ox, count, whole, &v[2], &v[3]);
            // As maxPoolPlane: the largest, a NaN winning (the last of the window); the first equal
            // element; a NaN's window marked as a tie.
            __m256 best = v[0];
            __m256i at = _mm256_setzero_si256(), hits = _mm256_setzero_si256(), nanAt = _mm256_set1_epi32(-1);
            for (int i = 0; i < 4; i++) {
                const __m256 isNaN = _mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q);
                if (i > 0) best = _mm256_blendv_ps(best, v[i], _mm256_or_ps(_mm256_cmp_ps(v[i], best, _CMP_GT_OQ), isNaN));
                nanAt = _mm256_blendv_epi8(nanAt, _mm256_set1_epi32(i), _mm256_castps_si256(isNaN));
            }
            for (int i = 3; i >= 0; i--) {
                const __m256i hit = _mm256_castps_si256(_mm256_cmp_ps(v[i], best, _CMP_EQ_OQ));
                at = _mm256_blendv_epi8(at, _mm256_set1_epi32(i), hit);
                hits = _mm256_sub_epi32(hits, hit);
            }
            const __m256i hasNaN = _mm256_cmpgt_epi32(nanAt, _mm256_set1_epi32(-1));
            at = _mm256_blendv_epi8(at, nanAt, hasNaN);
            hits = _mm256_blendv_epi8(hits, _mm256_set1_epi32(2), hasNaN);
            // winner = corner + (at / 2) · w + at % 2, corner = 2 oy · w + 2 (ox + lane)
            const __m256i corner = _mm256_add_epi32(_mm256_set1_epi32((int)(2 * oy * w + 2 * ox)),
                _mm256_slli_epi32(laneIndex, 1));
            const __m256i winner = _mm256_add_epi32(corner, _mm256_add_epi32(
                _mm256_mullo_epi32(_mm256_srli_epi32(at, 1), _mm256_set1_epi32((int)w)),
                _mm256_and_si256(at, _mm256_set1_epi32(1))));
            const __m256i tie = _mm256_cmpgt_epi32(hits, _mm256_set1_epi32(1));
            const __m256i piece = _mm256_blendv_epi8(at, _mm256_set1_epi32(-1), tie);
            const long o = first + oy * ow + ox;
            // A short vector at the end of a row (7 outputs of a 14-wide input) is stored whole
            // when the plane has outputs to spare after it: its extra lanes land on the next
            // outputs of this plane, which this loop writes afterwards.
            storeLanes(out, o, count, first + oh * ow, _mm256_castps_si256(best));
            storeLanes(winners, o, count, first + oh * ow, winner);
            storeLanes(pieces, o, count, first + oh * ow, piece);
        }
    }
}

/// Eight values `x[0], x[s], …, x[7 s]`: one load at stride 1, the even elements of sixteen at
/// stride 2, a gather otherwise (`offsets` = `lane · s`). Reads `poolReach(s)` values from `x`.
static inline TARGET_AVX2 __attribute__((always_inline)) __m256 loadStrided(const float *x, long s, __m256i offsets) {
    if (s == 1) return _mm256_loadu_ps(x);
    if (s == 2) {
        __m256 even, odd;
        evenOdd(x, 8, 1, &even, &odd);
        return even;
    }
    return _mm256_i32gather_ps(x, offsets, 4);
}

/// How many values `loadStrided` reads from its first: `7 s + 1`, sixteen at stride 2.
static inline long poolReach(long s) { return s == 2 ? 16 : 7 * s + 1; }

/// Whether eight windows from column `left` (of `k` columns, `s` apart) on the plane's rows
/// `[0, y1)` can be read as vectors: every lane's reads, the short vector's extra lanes included,
/// lie in the input (which ends at `end`; the lanes past a row's end read the rows that follow).
static inline int vectorsFit(const float *input, const float *end, long w, long y1, long left, long k, long s) {
    return input + (y1 - 1) * w + left + k - 1 + poolReach(s) <= end;
}

/// Max pooling of `count` (≤ 8) windows of row `oy` from column `ox`, inside the plane's columns,
/// one a lane, as `maxPoolOne` computes each: the same comparisons in the same order. Starting
/// from -inf rather than the window's first element changes nothing: that element then replaces
/// it, or equals it.
static inline TARGET_AVX2 __attribute__((always_inline)) void maxPoolGroup(const float *restrict input,
    float *restrict out, int *restrict winners, int *restrict pieces, const BPWindow *g, long oy, long ox,
    long count, __m256i offsets, long o, long planeEnd) {
    const long h = g->h, w = g->w, k = g->kh, s = g->sh, p = g->ph;
    const long top = oy * s - p, y0 = top > 0 ? top : 0, y1 = top + k < h ? top + k : h, left = ox * s - p;
    const float *corner = input + left;
    // The largest, a NaN winning (the last NaN of the window, with its piece and place).
    __m256 best = _mm256_set1_ps(-__builtin_inff());
    __m256i nanPiece = _mm256_set1_epi32(-1), nanPlace = _mm256_setzero_si256();
    for (long iy = y0; iy < y1; iy++)
        for (long kx = 0; kx < k; kx++) {
            const __m256 v = loadStrided(corner + iy * w + kx, s, offsets);
            const __m256 isNaN = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
            best = _mm256_blendv_ps(best, v, _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), isNaN));
            const __m256i nan = _mm256_castps_si256(isNaN);
            nanPiece = _mm256_blendv_epi8(nanPiece, _mm256_set1_epi32((int)((iy - top) * k + kx)), nan);
            nanPlace = _mm256_blendv_epi8(nanPlace, _mm256_set1_epi32((int)(iy * w + kx)), nan);
        }
    // The first element equal to it, and how many are.
    __m256i found = _mm256_setzero_si256(), hits = _mm256_setzero_si256();
    __m256i piece = _mm256_setzero_si256(), place = _mm256_setzero_si256();
    for (long iy = y0; iy < y1; iy++)
        for (long kx = 0; kx < k; kx++) {
            const __m256 v = loadStrided(corner + iy * w + kx, s, offsets);
            const __m256i hit = _mm256_castps_si256(_mm256_cmp_ps(v, best, _CMP_EQ_OQ));
            const __m256i firstHit = _mm256_andnot_si256(found, hit);
            piece = _mm256_blendv_epi8(piece, _mm256_set1_epi32((int)((iy - top) * k + kx)), firstHit);
            place = _mm256_blendv_epi8(place, _mm256_set1_epi32((int)(iy * w + kx)), firstHit);
            found = _mm256_or_si256(found, hit);
            hits = _mm256_sub_epi32(hits, hit);
        }
    // A NaN has no derivative: its window is marked as a tie is.
    const __m256i hasNaN = _mm256_cmpgt_epi32(nanPiece, _mm256_set1_epi32(-1));
    piece = _mm256_blendv_epi8(piece, nanPiece, hasNaN);
    place = _mm256_blendv_epi8(place, nanPlace, hasNaN);
    hits = _mm256_blendv_epi8(hits, _mm256_set1_epi32(2), hasNaN);
    const __m256i winner = _mm256_add_epi32(place, _mm256_add_epi32(_mm256_set1_epi32((int)left), offsets));
    piece = _mm256_blendv_epi8(piece, _mm256_set1_epi32(-1), _mm256_cmpgt_epi32(hits, _mm256_set1_epi32(1)));
    storeLanes(out, o, count, planeEnd, _mm256_castps_si256(best));
    storeLanes(winners, o, count, planeEnd, winner);
    storeLanes(pieces, o, count, planeEnd, piece);
}

/// The windows of plane `plane` of `g`, row by row: groups of up to eight inside the plane's
/// columns (`[inLeft, inRight)`) whose vectors fit in the input (of `x`), `GROUP(ox, count)`; the
/// rest one by one, `ONE(ox)`. Both see `input` (the plane), `first` (its first output), `oy`,
/// `offsets` (`lane · s`) and `planeEnd`. (Gathers that masked the padding out of the edge
/// windows' vectors took longer than the one-by-one loop on Zen 3.)
#define FOR_EACH_POOL_GROUP(GROUP, ONE)                                                                            \
    const long h = g->h, w = g->w, k = g->kh, s = g->sh, p = g->ph, oh = g->oh, ow = g->ow;                      \
    const float *input = x + plane * h * w, *end = x + g->n * g->c * h * w;                                      \
    const long first = plane * oh * ow, planeEnd = first + oh * ow;                                              \
    long inLeft, inRight;                                                                                        \
    insideColumns(g, &inLeft, &inRight);                                                                         \
    const __m256i offsets = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)s)); \
    for (long oy = 0; oy < oh; oy++) {                                                                           \
        const long top = oy * s - p, y1 = top + k < h ? top + k : h;                                             \
        for (long ox = 0; ox < ow;) {                                                                            \
            const long stop = ox < inLeft ? inLeft : ox < inRight ? inRight : ow;                                  \
            const long count = stop - ox < 8 ? stop - ox : 8;                                                     \
            if (ox >= inLeft && ox < inRight && vectorsFit(input, end, w, y1, ox * s - p, k, s)) {               \
                GROUP(ox, count);                                                                                \
            } else {                                                                                             \
                for (long j = ox; j < ox + count; j++) ONE(j);                                                    \
            }                                                                                                    \
            ox += count;                                                                                           \
        }                                                                                                        \
    }

/// Max pooling of any window, stride and padding, eight windows of a row at a time where they lie
/// inside the plane's columns (`maxPoolGroup`), `maxPoolOne` for the rest.
static TARGET_AVX2 void maxPoolPlaneVectors(const float *restrict x, float *restrict out, int *restrict winners,
    int *restrict pieces, const BPWindow *g, long plane) {
#define MAX_GROUP(ox, count) \
    maxPoolGroup(input, out, winners, pieces, g, oy, ox, count, offsets, first + oy * ow + ox, planeEnd)
#define MAX_ONE(ox) maxPoolOne(input, out, winners, pieces, g, first + oy * ow + ox, oy, ox)
    FOR_EACH_POOL_GROUP(MAX_GROUP, MAX_ONE)
#undef MAX_GROUP
#undef MAX_ONE
}

#endif

void bp_max_pool(const float *x, float *out, int *winners, int *pieces, const BPWindow *g, long planeBegin,
    long planeEnd) {
#if defined(__x86_64__) || defined(_M_X64)
    if (bp_gemm_avx2_available()) {
        // The common 2 × 2 pooling at stride 2 without padding has a kernel of its own.
        if (g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0) {
            for (long plane = planeBegin; plane < planeEnd; plane++) maxPool2x2Plane(x, out, winners, pieces, g, plane);
            return;
        }
        // Others in vectors where a row has at least four windows inside the plane: 3 × 3 windows
        // at stride 2 on 14-wide planes (six a row) took half the time of the plain loops; on
        // narrower rows the vectors' setup costs what they save.
        long inLeft, inRight;
        insideColumns(g, &inLeft, &inRight);
        if (inRight - inLeft >= 4) {
            for (long plane = planeBegin; plane < planeEnd; plane++)
                maxPoolPlaneVectors(x, out, winners, pieces, g, plane);
            return;
        }
    }
#endif
    if (g->ph != 0 || g->pw != 0) {
        for (long plane = planeBegin; plane < planeEnd; plane++) maxPoolPlanePadded(x, out, winners, pieces, g, plane);
        return;
    }
    for (long plane = planeBegin; plane < planeEnd; plane++) {
        switch (g->kh) {
        case 2: maxPoolPlane(x, out, winners, pieces, g, plane, 2); break;
        case 3: maxPoolPlane(x, out, winners, pieces, g, plane, 3); break;
        default: maxPoolPlane(x, out, winners, pieces, g, plane, g->kh); break;
        }
    }
}

void bp_max_pool_backward(const float *gOut, const int *winners, float *gInp, const BPWindow *g, long planeBegin,
    long planeEnd) {
    const long planeSize = g->h * g->w, outputs = g->oh * g->ow;
    for (long plane = planeBegin; plane < planeEnd; plane++) {
        float *target = gInp + plane * planeSize;
        memset(target, 0, (size_t)planeSize * sizeof(float));
        for (long o = plane * outputs; o < (plane + 1) * outputs; o++) target[winners[o]] += gOut[o];
    }
}

/// The mean's factor `1 / k²`, in Double (`k²` as a `long` overflows past k = 3037000499).
static inline double meanScale(long k) { return 1.0 / ((double)k * (double)k); }

/// Average pooling of one plane, `k` a constant where the caller inlines it. Each window is
/// summed from 0 in Double, row-major, and scaled once, as the recorded path's `mean(1)` over
/// its unfolded rows (`bp_sum_columns`): the two paths agree to the bit (a max pooling after
/// them finds the same winners), and a window of large values whose mean is finite gives it
/// (PyTorch's Float sum overflows to inf there).
INLINE void avgPoolPlane(const float *restrict x, float *restrict out, const BPWindow *g, long plane, long k) {
    const long h = g->h, w = g->w, s = g->sh, oh = g->oh, ow = g->ow;
    const double scale = meanScale(k);
    const float *input = x + plane * h * w;
    float *o = out + plane * oh * ow;
    for (long oy = 0; oy < oh; oy++) {
        for (long ox = 0; ox < ow; ox++) {
            const float *window = input + oy * s * w + ox * s;
            double total = 0;
            for (long ky = 0; ky < k; ky++)
                for (long kx = 0; kx < k; kx++) total += window[ky * w + kx];
            *o++ = (float)(total * scale);
        }
    }
}

/// One output of average pooling, window `(oy, ox)` of the plane at `input`: the sum of the window
/// clipped to the plane, summed in Double and scaled by `1 / k²` as `avgPoolPlane`, the padding
/// counted as zeros (PyTorch's `count_include_pad=True`, its default). Without `countPadding`
/// (`count_include_pad=False`) that mean is then multiplied by the Float `k² / count`, `count` the
/// window's elements in the plane, as the recorded path's `mean(1) * factors` does: no overflow
/// where the mean is a Float (a sum rounded to Float first overflowed), and a window inside the
/// plane the same in both modes.
static inline float avgPoolOne(const float *restrict input, const BPWindow *g, long oy, long ox, int countPadding) {
    const long w = g->w, k = g->kh;
    const ClippedWindow c = clippedWindow(g, oy, ox);
    double total = 0;
    for (long iy = c.y0; iy < c.y1; iy++)
        for (long ix = c.x0; ix < c.x1; ix++) total += input[iy * w + ix];
    const float mean = (float)(total * meanScale(k));
    return countPadding ? mean : mean * windowFactor(c, k);
}

/// Average pooling of one plane with padding: `avgPoolOne` for each output.
static void avgPoolPlanePadded(
    const float *restrict x, float *restrict out, const BPWindow *g, long plane, int countPadding) {
    const float *input = x + plane * g->h * g->w;
    float *o = out + plane * g->oh * g->ow;
    for (long oy = 0; oy < g->oh; oy++)
        for (long ox = 0; ox < g->ow; ox++) *o++ = avgPoolOne(input, g, oy, ox, countPadding);
}

/// Average pooling's backward for window `(oy, ox)` of a plane: its share of `gradient` (times
/// `scale`, the Float `1 / k²`; first multiplied by `k² / count` without `countPadding`) added to
/// each of its elements in the plane, row-major; the padding's shares go nowhere.
static inline void avgPoolBackwardOne(
    float *restrict target, float gradient, const BPWindow *g, long oy, long ox, int countPadding, float scale) {
    const long w = g->w, k = g->kh;
    const ClippedWindow c = clippedWindow(g, oy, ox);
    const float value = countPadding ? gradient * scale : gradient * windowFactor(c, k) * scale;
    for (long iy = c.y0; iy < c.y1; iy++)
        for (long ix = c.x0; ix < c.x1; ix++) target[iy * w + ix] += value;
}

#if defined(__x86_64__) || defined(_M_X64)

/// Average pooling of `count` (≤ 8) windows of row `oy` from column `ox`, inside the plane's
/// columns, one a lane, as `avgPoolOne` computes each: per lane the same Double additions in the
/// same order, the same roundings.
static inline TARGET_AVX2 __attribute__((always_inline)) void avgPoolGroup(const float *restrict input,
    float *restrict out, const BPWindow *g, long oy, long ox, long count, int countPadding, __m256i offsets, long o,
    long planeEnd) {
    const long h = g->h, w = g->w, k = g->kh, s = g->sh, p = g->ph;
    const long top = oy * s - p, y0 = top > 0 ? top : 0, y1 = top + k < h ? top + k : h, left = ox * s - p;
    const float *corner = input + left;
    __m256d low = _mm256_setzero_pd(), high = _mm256_setzero_pd();
    for (long iy = y0; iy < y1; iy++)
        for (long kx = 0; kx < k; kx++) {
            const __m256 v = loadStrided(corner + iy * w + kx, s, offsets);
            low = _mm256_add_pd(low, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            high = _mm256_add_pd(high, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
    const __m256d scale = _mm256_set1_pd(meanScale(k));
    __m256 mean =
        _mm256_set_m128(_mm256_cvtpd_ps(_mm256_mul_pd(high, scale)), _mm256_cvtpd_ps(_mm256_mul_pd(low, scale)));
    // Windows inside the columns share their rows, and so their k² / count.
    if (!countPadding) mean = _mm256_mul_ps(mean, _mm256_set1_ps(windowFactor(clippedWindow(g, oy, ox), k)));
    storeLanes(out, o, count, planeEnd, _mm256_castps_si256(mean));
}

/// Average pooling of any window, stride and padding, eight windows of a row at a time where they
/// lie inside the plane's columns (`avgPoolGroup`), `avgPoolOne` for the rest.
static TARGET_AVX2 void avgPoolPlaneVectors(
    const float *restrict x, float *restrict out, const BPWindow *g, long plane, int countPadding) {
#define AVG_GROUP(ox, count) \
    avgPoolGroup(input, out, g, oy, ox, count, countPadding, offsets, first + oy * ow + ox, planeEnd)
#define AVG_ONE(ox) out[first + oy * ow + ox] = avgPoolOne(input, g, oy, ox, countPadding)
    FOR_EACH_POOL_GROUP(AVG_GROUP, AVG_ONE)
#undef AVG_GROUP
#undef AVG_ONE
}

/// Average pooling's backward at stride 1, eight windows of a row at a time where they lie inside
/// the plane's columns, `avgPoolBackwardOne` for the rest. Each element of `gInp` gets the same
/// additions in the same order as from `avgPoolBackwardOne` window by window, row-major: within
/// eight windows, the kernel's columns from the last to the first reach an element from its
/// windows left to right.
static TARGET_AVX2 void avgPoolBackwardPlaneStride1(
    const float *restrict gOut, float *restrict gInp, const BPWindow *g, long plane, int countPadding) {
    const long h = g->h, w = g->w, k = g->kh, p = g->ph, oh = g->oh, ow = g->ow;
    float *target = gInp + plane * h * w;
    memset(target, 0, (size_t)(h * w) * sizeof(float));
    const float *share = gOut + plane * oh * ow;
    long inLeft, inRight;
    insideColumns(g, &inLeft, &inRight);
    const float scalar = (float)meanScale(k);
    const __m256 scale = _mm256_set1_ps(scalar);
    for (long oy = 0; oy < oh; oy++) {
        const long top = oy - p, y0 = top > 0 ? top : 0, y1 = top + k < h ? top + k : h;
        const float *shares = share + oy * ow;
        const ClippedWindow inside = {y0, y1, 0, k};
        const __m256 factor = _mm256_set1_ps(windowFactor(inside, k));
        long ox = 0;
        for (; ox < inLeft; ox++) avgPoolBackwardOne(target, shares[ox], g, oy, ox, countPadding, scalar);
        for (; ox + 8 <= inRight; ox += 8) {
            const __m256 gradient = _mm256_loadu_ps(shares + ox);
            const __m256 value =
                _mm256_mul_ps(countPadding ? gradient : _mm256_mul_ps(gradient, factor), scale);
            for (long iy = y0; iy < y1; iy++)
                for (long kx = k - 1; kx >= 0; kx--) {
                    float *t = target + iy * w + ox - p + kx;
                    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), value));
                }
        }
        for (; ox < ow; ox++) avgPoolBackwardOne(target, shares[ox], g, oy, ox, countPadding, scalar);
    }
}

/// Average pooling's backward for 2 × 2 windows at stride 2 without padding: each window's four
/// elements get `0 + share · scale` (what the plain loop's `+=` on zeros gives), eight windows of
/// a row at a time, each share written twice side by side on two rows; an odd plane's last
/// column and row, in no window, get 0.
static TARGET_AVX2 void avgPoolBackward2x2Plane(
    const float *restrict share, float *restrict target, const BPWindow *g, float scale) {
    const long h = g->h, w = g->w, oh = g->oh, ow = g->ow;
    const __m256 factor = _mm256_set1_ps(scale), zero = _mm256_setzero_ps();
    for (long oy = 0; oy < oh; oy++) {
        float *top = target + 2 * oy * w, *bottom = top + w;
        const float *shares = share + oy * ow;
        long ox = 0;
        for (; ox + 8 <= ow; ox += 8) {
            const __m256 value = _mm256_add_ps(zero, _mm256_mul_ps(_mm256_loadu_ps(shares + ox), factor));
            // [v0 v0 v1 v1 | v4 v4 v5 v5] and [v2 v2 v3 v3 | v6 v6 v7 v7], then their halves in order.
            const __m256 low = _mm256_unpacklo_ps(value, value), high = _mm256_unpackhi_ps(value, value);
            const __m256 first = _mm256_permute2f128_ps(low, high, 0x20);
            const __m256 second = _mm256_permute2f128_ps(low, high, 0x31);
            _mm256_storeu_ps(top + 2 * ox, first);
            _mm256_storeu_ps(top + 2 * ox + 8, second);
            _mm256_storeu_ps(bottom + 2 * ox, first);
            _mm256_storeu_ps(bottom + 2 * ox + 8, second);
        }
        for (; ox < ow; ox++) {
            const float value = 0.0f + shares[ox] * scale;
            top[2 * ox] = top[2 * ox + 1] = bottom[2 * ox] = bottom[2 * ox + 1] = value;
        }
        if (w > 2 * ow) top[w - 1] = bottom[w - 1] = 0;
    }
    if (h > 2 * oh) memset(target + 2 * oh * w, 0, (size_t)w * sizeof(float));
}

#endif

void bp_avg_pool(const float *x, float *out, const BPWindow *g, int countPadding, long planeBegin, long planeEnd) {
#if defined(__x86_64__) || defined(_M_X64)
    // Overlapping windows read each element several times from the cache: vectors pay there. Windows
    // side by side read each once, as fast as memory brings it, and the plain loops keep up (the
    // vectors' setup cost more than they saved: 2 × 2 pooling of 7-wide planes took 2.5 times as
    // long), as on planes with fewer than a vector's worth of windows inside a row.
    long inLeft, inRight;
    insideColumns(g, &inLeft, &inRight);
    if (g->sh < g->kh && inRight - inLeft >= 8 && bp_gemm_avx2_available()) {
        for (long plane = planeBegin; plane < planeEnd; plane++) avgPoolPlaneVectors(x, out, g, plane, countPadding);
        return;
    }
#endif
    if (g->ph != 0 || g->pw != 0) {
        for (long plane = planeBegin; plane < planeEnd; plane++) avgPoolPlanePadded(x, out, g, plane, countPadding);
        return;
    }
    for (long plane = planeBegin; plane < planeEnd; plane++) {
        switch (g->kh) {
        case 2: avgPoolPlane(x, out, g, plane, 2); break;
        case 3: avgPoolPlane(x, out, g, plane, 3); break;
        default: avgPoolPlane(x, out, g, plane, g->kh); break;
        }
    }
}

void bp_avg_pool_backward(
    const float *gOut, float *gInp, const BPWindow *g, int countPadding, long planeBegin, long planeEnd) {
#if defined(__x86_64__) || defined(_M_X64)
    if (g->sh == 1 && bp_gemm_avx2_available()) {
        for (long plane = planeBegin; plane < planeEnd; plane++)
            avgPoolBackwardPlaneStride1(gOut, gInp, g, plane, countPadding);
        return;
    }
#endif
    const long h = g->h, w = g->w, k = g->kh, s = g->sh, oh = g->oh, ow = g->ow;
    const float scale = (float)meanScale(k);
    for (long plane = planeBegin; plane < planeEnd; plane++) {
        float *target = gInp + plane * h * w;
        const float *share = gOut + plane * oh * ow;
#if defined(__x86_64__) || defined(_M_X64)
        if (k == 2 && s == 2 && g->ph == 0 && bp_gemm_avx2_available()) {
            avgPoolBackward2x2Plane(share, target, g, scale);
            continue;
        }
#endif
        memset(target, 0, (size_t)(h * w) * sizeof(float));
        if (g->ph == 0 && s >= k) {
            // Windows side by side (or apart) inside the plane: each element in one window at
            // most, its 0 plus the window's share (no padding: every window counts k² elements).
            for (long oy = 0; oy < oh; oy++)
                for (long ky = 0; ky < k; ky++) {
                    float *line = target + (oy * s + ky) * w;
                    for (long ox = 0; ox < ow; ox++) {
                        const float value = share[oy * ow + ox] * scale;
                        for (long kx = 0; kx < k; kx++) line[ox * s + kx] += value;
                    }
                }
            continue;
        }
        for (long oy = 0; oy < oh; oy++)
            for (long ox = 0; ox < ow; ox++) avgPoolBackwardOne(target, *share++, g, oy, ox, countPadding, scale);
    }
}

// MARK: - Layout

/// `t[j * ldt + i] = a[i * lda + j]` for `i` in `[i0, i1)` and `j` in `[0, columns)`: plain loops.
static void transposeRows(const float *restrict a, long lda, float *restrict t, long ldt, long columns, long i0,
    long i1) {
    for (long j = 0; j < columns; j++)
        for (long i = i0; i < i1; i++) t[j * ldt + i] = a[i * lda + j];
}

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))

/// One 8 × 8 block, transposed in registers: `t[j * ldt + i] = a[i * lda + j]`.
static inline TARGET __attribute__((always_inline)) void transpose8x8(const float *a, long lda, float *t, long ldt) {
    __m256 r[8], u[8], v[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(a + i * lda);
    for (int i = 0; i < 8; i += 2) {
        u[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        u[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        v[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
        v[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
        v[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
        v[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(t + j * ldt, _mm256_permute2f128_ps(v[j], v[j + 4], 0x20));
        _mm256_storeu_ps(t + (j + 4) * ldt, _mm256_permute2f128_ps(v[j], v[j + 4], 0x31));
    }
}

/// One matrix, in 8 × 8 blocks, the last rows and columns by plain loops.
static TARGET void transposeAVX2(const float *restrict a, long lda, float *restrict t, long ldt, long rows,
    long columns) {
    long i0 = 0;
    for (; i0 + 8 <= rows; i0 += 8) {
        long j0 = 0;
        for (; j0 + 8 <= columns; j0 += 8) transpose8x8(a + i0 * lda + j0, lda, t + j0 * ldt + i0, ldt);
        for (long j = j0; j < columns; j++)
            for (long i = i0; i < i0 + 8; i++) t[j * ldt + i] = a[i * lda + j];
    }
    transposeRows(a, lda, t, ldt, columns, i0, rows);
}

#endif

void bp_transpose_strided(const float *a, long lda, float *t, long ldt, long rows, long columns, int avx2) {
#if defined(__x86_64__) || defined(_M_X64)
    if (avx2) {
        transposeAVX2(a, lda, t, ldt, rows, columns);
        return;
    }
#else
    (void)avx2;
#endif
    transposeRows(a, lda, t, ldt, columns, 0, rows);
}

void bp_transpose(const float *x, float *y, long rows, long columns, long matrixBegin, long matrixEnd, int avx2) {
    const long size = rows * columns;
    for (long matrix = matrixBegin; matrix < matrixEnd; matrix++) {
        bp_transpose_strided(x + matrix * size, columns, y + matrix * size, rows, rows, columns, avx2);
    }
}
