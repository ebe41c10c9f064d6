// Direct convolution at stride 1, for the layers whose windows are too small for a matrix
// product: a first layer over one channel has windows of K = 9 values, and `W • colsᵀ` of depth
// 9 keeps BLAS's kernels mostly packing (and im2col writes every pixel 9 times). Here each output
// row is computed in place from a zero-padded copy of the image, eight outputs per vector.
//
// Forward, for each image i, output channel o, row y, and eight columns x at a time:
//   acc = 0;  for (c, ky, kx) in order:  acc = fma(w[o, c, ky, kx], x[i, c, y − p + ky, x − p + kx], acc)
//   out[i, o, y, x] = acc + b[o]
// one FMA chain per output in the order of the window's columns (c, ky, kx), as a matrix
// product's kernel sums a row of `cols` (0 over the padding).
//
// Weight gradient, over a range of images (the caller sums the ranges in order):
//   w.g[o, c, ky, kx] = Σ_{i, y, x} out.g[i, o, y, x] · x[i, c, y − p + ky, x − p + kx]
//   b.g[o]            = Σ_{i, y, x} out.g[i, o, y, x]
// each in eight lanes (lane j takes the columns x ≡ j mod 8 of a vector), then the lanes added
// in a fixed order: the same result on any number of threads.
//
// Where the processor has AVX-512 the forward pass runs sixteen outputs per vector (below), the
// same chains, so the same bits; the weight gradient stays in AVX2, since sixteen lanes would
// change the order in which its lanes are added.
//
// The tests check both against Double loops from the definition and against autograd, and the
// AVX-512 forward pass against the AVX2 one bit for bit.

#include "CKernels.h"

#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))
#define INLINE_TARGET static inline TARGET __attribute__((always_inline))

/// The padded plane's width: room for every pair of vectors of eight outputs (the last one runs
/// past `ow` into zeros) plus the kernel's width.
static long paddedWidth(const BPWindow *g) { return ((g->ow + 15) / 16) * 16 + g->kw - 1; }

/// Image `img` of `x` into `padded`, one plane of `plane` floats per channel in rows `width` floats
/// apart, zero around the image.
static void padImageInto(const float *restrict x, float *restrict padded, const BPWindow *g, long img, long width,
    long plane) {
    const long c = g->c, h = g->h, w = g->w;
    memset(padded, 0, (size_t)(c * plane) * sizeof(float));
    for (long ch = 0; ch < c; ch++) {
        const float *source = x + (img * c + ch) * h * w;
        float *row = padded + ch * plane + g->ph * width + g->pw;
        for (long iy = 0; iy < h; iy++, source += w, row += width) memcpy(row, source, (size_t)w * sizeof(float));
    }
}

/// Image `img` of `x` into `padded` (`[c, h + 2 ph, paddedWidth]`), zero around the image.
static void padImage(const float *restrict x, float *restrict padded, const BPWindow *g, long img) {
    padImageInto(x, padded, g, img, paddedWidth(g), (g->h + 2 * g->ph) * paddedWidth(g));
}

/// The eight lanes of `v` added in a fixed order: `(l0 + l4) + (l2 + l6)` and `(l1 + l5) + (l3 + l7)`.
INLINE_TARGET float laneSum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // l0+l4, l1+l5, l2+l6, l3+l7
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));  // (l0+l4)+(l2+l6), (l1+l5)+(l3+l7)
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/// A mask of the first `count` lanes (`count` ≤ 8).
INLINE_TARGET __m256i firstLanes(long count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/// Stores the first `count` lanes of `v` (all eight when `count` ≥ 8) at `target`.
INLINE_TARGET void storeLanes(float *target, __m256 v, long count) {
    if (count >= 8) {
        _mm256_storeu_ps(target, v);
    } else if (count > 0) {
        // Through memory rather than a masked store, which AMD's cores run slowly.
        float lanes[8];
        _mm256_storeu_ps(lanes, v);
        for (long j = 0; j < count; j++) target[j] = lanes[j];
    }
}

/// Output channels `[o0, o0 + channels)` of one image, `channels` (≤ 4), `kh` and `kw` constants
/// where the caller inlines it. A tile of `channels` × 16 outputs (one row, two vectors) keeps its
/// sums in registers; each input vector loaded serves every channel of the tile.
INLINE_TARGET void forwardChannels(const float *restrict padded, const float *restrict w, const float *restrict bias,
    float *restrict out, const BPWindow *g, long o0, long channels, long kh, long kw) {
    const long c = g->c, oh = g->oh, ow = g->ow, width = paddedWidth(g), rows = g->h + 2 * g->ph;
    const long k = c * kh * kw;
    for (long y = 0; y < oh; y++) {
        for (long x0 = 0; x0 < ow; x0 += 16) {
            __m256 acc[4][2];
            for (long j = 0; j < channels; j++) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
            for (long ch = 0; ch < c; ch++) {
                const float *corner = padded + (ch * rows + y) * width + x0;
                const float *weights = w + o0 * k + ch * kh * kw;
                for (long ky = 0; ky < kh; ky++) {
                    for (long kx = 0; kx < kw; kx++) {
                        const __m256 left = _mm256_loadu_ps(corner + ky * width + kx);
                        const __m256 right = _mm256_loadu_ps(corner + ky * width + kx + 8);
                        for (long j = 0; j < channels; j++) {
                            const __m256 weight = _mm256_set1_ps(weights[j * k + ky * kw + kx]);
                            acc[j][0] = _mm256_fmadd_ps(weight, left, acc[j][0]);
                            acc[j][1] = _mm256_fmadd_ps(weight, right, acc[j][1]);
                        }
                    }
                }
            }
            // A row's last vectors are stored whole when the plane has 16 outputs left from x0: their
            // lanes past the row land on the next rows' first outputs, which this loop writes
            // afterwards (the 14-wide rows of the convnet's second layer, 8 images on one Zen 1
            // core: 444-447 µs against 455-467 storing lane by lane).
            const int whole = y * ow + x0 + 16 <= oh * ow;
            // (Unrolled, so that the sums stay in registers: a loop over j had the compiler copy them
            // to the stack first.)
#pragma clang loop unroll(full)
            for (long j = 0; j < channels; j++) {
                // Bias added after the sum, as `W • colsᵀ` then `+ b` does.
                const __m256 shift = _mm256_set1_ps(bias ? bias[o0 + j] : 0.0f);
                float *target = out + ((o0 + j) * oh + y) * ow + x0;
                const __m256 left = bias ? _mm256_add_ps(acc[j][0], shift) : acc[j][0];
                const __m256 right = bias ? _mm256_add_ps(acc[j][1], shift) : acc[j][1];
                if (whole) {
                    _mm256_storeu_ps(target, left);
                    _mm256_storeu_ps(target + 8, right);
                } else {
                    storeLanes(target, left, ow - x0);
                    storeLanes(target + 8, right, ow - x0 - 8);
                }
            }
        }
    }
}

/// One image's output, `kh` and `kw` constants where the caller inlines it: four channels at a
/// time, then the rest one by one.
INLINE_TARGET void forwardImage(const float *restrict padded, const float *restrict w, const float *restrict bias,
    float *restrict out, const BPWindow *g, long cOut, long kh, long kw) {
    long o0 = 0;
    for (; o0 + 4 <= cOut; o0 += 4) forwardChannels(padded, w, bias, out, g, o0, 4, kh, kw);
    for (; o0 < cOut; o0++) forwardChannels(padded, w, bias, out, g, o0, 1, kh, kw);
}

static TARGET void forwardImages(const float *x, const float *w, const float *bias, float *out, const BPWindow *g,
    long cOut, long imageBegin, long imageEnd, float *padded) {
    const long outputs = cOut * g->oh * g->ow;
    for (long img = imageBegin; img < imageEnd; img++) {
        padImage(x, padded, g, img);
        if (g->kh == 3 && g->kw == 3) {
            forwardImage(padded, w, bias, out + img * outputs, g, cOut, 3, 3);
        } else {
            forwardImage(padded, w, bias, out + img * outputs, g, cOut, g->kh, g->kw);
        }
    }
}

// MARK: The forward pass in AVX-512

// Where the processor has AVX-512, a vector of sixteen outputs does what two of eight do above,
// with the same FMA chain per output (so the same bits), and a tile takes eight output channels
// (eight sums in registers) so that each input vector loaded serves eight channels.

#define TARGET512 __attribute__((target("avx512f,avx2,fma")))
#define INLINE_TARGET512 static inline TARGET512 __attribute__((always_inline))

/// `forwardChannels` with one 16-lane vector per channel, `channels` ≤ 8.
INLINE_TARGET512 void forwardChannels512(const float *restrict padded, const float *restrict w,
    const float *restrict bias, float *restrict out, const BPWindow *g, long o0, long channels, long kh, long kw) {
    const long c = g->c, oh = g->oh, ow = g->ow, width = paddedWidth(g), rows = g->h + 2 * g->ph;
    const long k = c * kh * kw;
    for (long y = 0; y < oh; y++) {
        for (long x0 = 0; x0 < ow; x0 += 16) {
            __m512 acc[8];
            for (long j = 0; j < channels; j++) acc[j] = _mm512_setzero_ps();
            for (long ch = 0; ch < c; ch++) {
                const float *corner = padded + (ch * rows + y) * width + x0;
                const float *weights = w + o0 * k + ch * kh * kw;
                for (long ky = 0; ky < kh; ky++) {
                    for (long kx = 0; kx < kw; kx++) {
                        const __m512 v = _mm512_loadu_ps(corner + ky * width + kx);
                        for (long j = 0; j < channels; j++) {
                            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(weights[j * k + ky * kw + kx]), v, acc[j]);
                        }
                    }
                }
            }
            const long count = ow - x0;
            const __mmask16 mask = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1);
            for (long j = 0; j < channels; j++) {
                // Bias added after the sum, as `W • colsᵀ` then `+ b` does.
                const __m512 value = bias ? _mm512_add_ps(acc[j], _mm512_set1_ps(bias[o0 + j])) : acc[j];
                _mm512_mask_storeu_ps(out + ((o0 + j) * oh + y) * ow + x0, mask, value);
            }
        }
    }
}

/// `forwardImage` in AVX-512: eight channels at a time, then four, then one by one.
INLINE_TARGET512 void forwardImage512(const float *restrict padded, const float *restrict w,
    const float *restrict bias, float *restrict out, const BPWindow *g, long cOut, long kh, long kw) {
    long o0 = 0;
    for (; o0 + 8 <= cOut; o0 += 8) forwardChannels512(padded, w, bias, out, g, o0, 8, kh, kw);
    for (; o0 + 4 <= cOut; o0 += 4) forwardChannels512(padded, w, bias, out, g, o0, 4, kh, kw);
    for (; o0 < cOut; o0++) forwardChannels512(padded, w, bias, out, g, o0, 1, kh, kw);
}

static TARGET512 void forwardImages512(const float *x, const float *w, const float *bias, float *out,
    const BPWindow *g, long cOut, long imageBegin, long imageEnd, float *padded) {
    const long outputs = cOut * g->oh * g->ow;
    for (long img = imageBegin; img < imageEnd; img++) {
        padImage(x, padded, g, img);
        if (g->kh == 3 && g->kw == 3) {
            forwardImage512(padded, w, bias, out + img * outputs, g, cOut, 3, 3);
        } else {
            forwardImage512(padded, w, bias, out + img * outputs, g, cOut, g->kh, g->kw);
        }
    }
}

// MARK: The weight gradient

// The weight gradient reads the image and the output's gradient as flat planes of whole rows of
// vectors: each padded image row `width = ⌈(w + 2 pw) / 8⌉ · 8` floats wide (at stride 1, w + 2 pw
// is ow + kw − 1), and each gradient row as wide, zero past `ow`. Then output (y, x) sits at
// `p = y · width + x` in the gradient's plane and its window's value (ky, kx) at `p + ky · width + kx`
// in the image's, so every window offset is one run of whole vectors over p, with no partial
// vector at the end of each row and no masked loads:
//
//   w.g[o, c, ky, kx] = Σ_i Σ_p gPadded[i, o, p] · padded[i, c, p + ky · width + kx]
//
// The gradient's zeros past `ow` cancel the terms whose window runs into the next row. Lane j of
// a sum takes the columns x ≡ j (mod 8) of each row, image by image and row by row, as the
// earlier kernel (one row at a time) did: the same sums in the same order (where a row's width
// holds one vector more than its ⌈ow / 8⌉, as for ow = 8 and kw = 3, that vector adds zeros).

/// The weight gradient's row width (see above).
static long gradientWidth(const BPWindow *g) { return (g->w + 2 * g->pw + 7) / 8 * 8; }

/// Floats of one channel of a padded image in the weight gradient's layout: its `h + 2 ph` rows,
/// and one more of zeros, into which the last windows' vectors reach.
static long gradientImagePlane(const BPWindow *g) { return (g->h + 2 * g->ph + 1) * gradientWidth(g); }

/// Floats of one channel of the output's gradient in that layout: `oh` rows.
static long gradientOutputPlane(const BPWindow *g) { return g->oh * gradientWidth(g); }

/// Image `img`'s output gradient (`[cOut, oh, ow]` in `gOut`) into `target` (`[cOut,
/// gradientOutputPlane]`), zero past `ow` in each row.
static void padGradientRows(const float *restrict gOut, float *restrict target, const BPWindow *g, long cOut, long img) {
    const long oh = g->oh, ow = g->ow, width = gradientWidth(g);
    const float *source = gOut + img * cOut * oh * ow;
    for (long row = 0; row < cOut * oh; row++, source += ow, target += width) {
        memcpy(target, source, (size_t)ow * sizeof(float));
        memset(target + ow, 0, (size_t)(width - ow) * sizeof(float));
    }
}

/// The weight gradients of output channels `[o0, o0 + channels)` (`channels` ≤ 4) over images
/// `[0, m)` of `padded` and `gPadded` (the layout above); `channels`, `kh` and `kw` constants where
/// the caller inlines it. A tile of `channels` × 3 window columns keeps its 12 sums in registers:
/// each vector of the image serves every channel of the tile, and each vector of the gradient
/// three window columns (7 loads for 12 fused multiply-adds).
INLINE_TARGET void weightGradientChannels(const float *restrict padded, const float *restrict gPadded,
    float *restrict wg, const BPWindow *g, long cOut, long m, long o0, long channels, long kh, long kw) {
    const long c = g->c, width = gradientWidth(g), plane = gradientImagePlane(g), gPlane = gradientOutputPlane(g);
    const long k = c * kh * kw;
    for (long ch = 0; ch < c; ch++) {
        for (long ky = 0; ky < kh; ky++) {
            for (long kx0 = 0; kx0 < kw; kx0 += 3) {
                const long span = kw - kx0 < 3 ? kw - kx0 : 3;
                __m256 acc[4][3];
                for (long jo = 0; jo < channels; jo++) {
                    for (long j = 0; j < span; j++) acc[jo][j] = _mm256_setzero_ps();
                }
                for (long img = 0; img < m; img++) {
                    const float *gp = gPadded + (img * cOut + o0) * gPlane;
                    const float *xp = padded + (img * c + ch) * plane + ky * width + kx0;
                    for (long p = 0; p < gPlane; p += 8) {
                        __m256 xv[3];
                        for (long j = 0; j < span; j++) xv[j] = _mm256_loadu_ps(xp + p + j);
                        for (long jo = 0; jo < channels; jo++) {
                            const __m256 gv = _mm256_loadu_ps(gp + jo * gPlane + p);
                            for (long j = 0; j < span; j++) acc[jo][j] = _mm256_fmadd_ps(gv, xv[j], acc[jo][j]);
                        }
                    }
                }
                for (long jo = 0; jo < channels; jo++) {
                    for (long j = 0; j < span; j++) wg[(o0 + jo) * k + (ch * kh + ky) * kw + kx0 + j] = laneSum(acc[jo][j]);
                }
            }
        }
    }
}

/// The bias gradients of output channels `[o0, o0 + channels)` over images `[0, m)` of `gPadded`
/// (the layout above): each channel's values in eight lanes, row by row, the ⌈ow / 8⌉ vectors of
/// each row (the lanes past `ow` are its zeros), one chain of additions per channel; `channels`
/// (≤ 8) a constant where the caller inlines it. Eight chains at once keep the adder busy: one alone
/// waits out each addition's latency (a third of the first layer's weight gradient went to it).
INLINE_TARGET void biasGradientChannels(const float *restrict gPadded, float *restrict bg, const BPWindow *g,
    long cOut, long m, long o0, long channels) {
    const long oh = g->oh, ow = g->ow, width = gradientWidth(g), gPlane = gradientOutputPlane(g);
    __m256 sum[8];
    for (long j = 0; j < channels; j++) sum[j] = _mm256_setzero_ps();
    for (long img = 0; img < m; img++) {
        for (long y = 0; y < oh; y++) {
            const float *gRow = gPadded + (img * cOut + o0) * gPlane + y * width;
            for (long x0 = 0; x0 < ow; x0 += 8) {
                for (long j = 0; j < channels; j++) sum[j] = _mm256_add_ps(sum[j], _mm256_loadu_ps(gRow + j * gPlane + x0));
            }
        }
    }
    for (long j = 0; j < channels; j++) bg[o0 + j] = laneSum(sum[j]);
}

/// The bias gradients over images `[0, m)`: eight channels at a time, then one by one.
INLINE_TARGET void biasGradient(const float *restrict gPadded, float *restrict bg, const BPWindow *g, long cOut, long m) {
    long o0 = 0;
    for (; o0 + 8 <= cOut; o0 += 8) biasGradientChannels(gPadded, bg, g, cOut, m, o0, 8);
    for (; o0 < cOut; o0++) biasGradientChannels(gPadded, bg, g, cOut, m, o0, 1);
}

/// The weight gradients of images `[0, m)`: four output channels at a time, then the rest one by one.
INLINE_TARGET void weightGradient(const float *restrict padded, const float *restrict gPadded, float *restrict wg,
    const BPWindow *g, long cOut, long m, long kh, long kw) {
    long o0 = 0;
    for (; o0 + 4 <= cOut; o0 += 4) weightGradientChannels(padded, gPadded, wg, g, cOut, m, o0, 4, kh, kw);
    for (; o0 < cOut; o0++) weightGradientChannels(padded, gPadded, wg, g, cOut, m, o0, 1, kh, kw);
}

static TARGET void weightGradientImages(const float *x, const float *gOut, float *wg, float *bg, const BPWindow *g,
    long cOut, long imageBegin, long imageEnd, float *scratch) {
    const long m = imageEnd - imageBegin;
    const long imageSize = g->c * gradientImagePlane(g), gradientSize = cOut * gradientOutputPlane(g);
    float *padded = scratch, *gPadded = scratch + m * imageSize;
    for (long img = imageBegin; img < imageEnd; img++) {
        padImageInto(x, padded + (img - imageBegin) * imageSize, g, img, gradientWidth(g), gradientImagePlane(g));
        padGradientRows(gOut, gPadded + (img - imageBegin) * gradientSize, g, cOut, img);
    }
    if (g->kh == 3 && g->kw == 3) {
        weightGradient(padded, gPadded, wg, g, cOut, m, 3, 3);
    } else {
        weightGradient(padded, gPadded, wg, g, cOut, m, g->kh, g->kw);
    }
    if (bg) biasGradient(gPadded, bg, g, cOut, m);
}

#endif

int bp_conv_direct_available(const BPWindow *g) {
#if defined(__x86_64__) || defined(_M_X64)
    return g->sh == 1 && g->sw == 1 && g->oh > 0 && g->ow > 0 && bp_gemm_avx2_available();
#else
    (void)g;
    return 0;
#endif
}

long bp_conv_direct_scratch(const BPWindow *g, long images) {
#if defined(__x86_64__) || defined(_M_X64)
    return images * g->c * (g->h + 2 * g->ph) * paddedWidth(g);
#else
    (void)g;
    (void)images;
    return 0;
#endif
}

long bp_conv_direct_gradient_scratch(const BPWindow *g, long cOut, long images) {
#if defined(__x86_64__) || defined(_M_X64)
    return images * (g->c * gradientImagePlane(g) + cOut * gradientOutputPlane(g));
#else
    (void)g;
    (void)cOut;
    (void)images;
    return 0;
#endif
}

int bp_conv_direct_forward(const float *x, const float *w, const float *bias, float *out, const BPWindow *g,
    long cOut, long imageBegin, long imageEnd) {
#if defined(__x86_64__) || defined(_M_X64)
    float *padded = bp_thread_scratch(bp_conv_direct_scratch(g, 1));
    if (!padded) return 0;
    if (bp_kernels_use_avx512()) {
        forwardImages512(x, w, bias, out, g, cOut, imageBegin, imageEnd, padded);
    } else {
        forwardImages(x, w, bias, out, g, cOut, imageBegin, imageEnd, padded);
    }
    return 1;
#else
    (void)x, (void)w, (void)bias, (void)out, (void)g, (void)cOut, (void)imageBegin, (void)imageEnd;
    return 0;
#endif
}

int bp_conv_direct_weight_gradient(const float *x, const float *gOut, float *wg, float *bg, const BPWindow *g,
    long cOut, long imageBegin, long imageEnd) {
#if defined(__x86_64__) || defined(_M_X64)
    float *scratch = bp_thread_scratch(bp_conv_direct_gradient_scratch(g, cOut, imageEnd - imageBegin));
    if (!scratch) return 0;
    weightGradientImages(x, gOut, wg, bg, g, cOut, imageBegin, imageEnd, scratch);
    return 1;
#else
    (void)x, (void)gOut, (void)wg, (void)bg, (void)g, (void)cOut, (void)imageBegin, (void)imageEnd;
    return 0;
#endif
}
