// Direct convolution at stride 1, for the layers whose windows are too small for a matrix
// product: a first layer over one channel has windows of K = 9 values, and `W • colsᵀ` of depth
// 9 keeps BLAS's kernels mostly packing (and im2col writes every pixel 9 times). Here each output
// row is computed in place from a zero-padded copy of the image, eight outputs per vector; or,
// where rows are narrow and windows deep (14 wide and 144 values, 7 wide, 4 wide), eight output
// channels of one pixel per vector (the channel tiles, below), with the same bits.
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

/// Floats of one image padded by `padImage`.
static long paddedImageFloats(const BPWindow *g) { return g->c * (g->h + 2 * g->ph) * paddedWidth(g); }

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

// MARK: The forward pass by output channels

// The tiles above hold sixteen outputs of one row in two vectors: a 14-wide row leaves 2 of 16
// lanes idle, a 7-wide one 9. Where the output channels fill whole vectors better than the row
// does, a vector holds eight output channels of one pixel instead, with each value of the image
// broadcast and each window position's weights for eight channels loaded:
//
//   acc[o..o+7] = fma(w[o..o+7, c, ky, kx], x[c, y − ph + ky, x − pw + kx], acc)   for (c, ky, kx) in order
//
// the same chain per output, in the same order, then `+ b[o]`: the same bits as the row tiles. A
// tile takes `pixels` consecutive pixels of the output plane (it may span rows: each pixel reads
// its window through its own pointer into the padded image) and `vectors` vectors of channels.
// The weights are packed once per call as `[c, ky, kx, cOut rounded up to 8]` (zeros past
// `cOut`), an image's outputs go to a pixel-major scratch `[pixel, channel]`, and each image ends
// with a transposition into `out`'s planes.

/// The floats of the channel tiles' weights in their packed layout, `cOut` rounded up to 8.
static long channelStride(long cOut) { return (cOut + 7) / 8 * 8; }

/// The most pixels a channel tile takes.
#define CHANNEL_TILE_PIXELS 6

/// Whether eight output channels a vector beat a layout whose vectors hold `rowLanes` useful
/// lanes each, for windows of `k` values: each layout's useful lanes, discounted for its work per
/// tile besides the window's multiply-adds, as if a tile had 8 more window positions (rows) or 24
/// more (channels: the stores of 12 vectors and each image's transposition). The constants fit 22
/// shapes timed on Zen 1 (BENCHMARKS.md, Benchmarks/conv_tiles.sh).
static int channelsFillMore(long k, double rowLanes, long cOut) {
    const double channelLanes = (double)cOut / (double)channelStride(cOut), window = (double)k;
    return channelLanes * window / (window + 24) > rowLanes * window / (window + 8);
}

/// `offsets[i]`: window position `i = (c, ky, kx)` from a window's corner in a padded image whose
/// rows are `width` floats apart (`padImage` lays out `rows = h + 2 ph` of them a channel).
static void windowOffsets(const BPWindow *g, long width, long *offsets) {
    const long rows = g->h + 2 * g->ph, k = g->c * g->kh * g->kw;
    for (long i = 0; i < k; i++) {
        const long ch = i / (g->kh * g->kw), ky = i / g->kw % g->kh, kx = i % g->kw;
        offsets[i] = (ch * rows + ky) * width + kx;
    }
}

/// Whether the channel tiles compute this forward pass (`layout` 0: the faster by
/// `channelsFillMore`, the rows' lanes being a row's outputs in pairs of vectors; 1: rows; 2:
/// channels). On Zen 1 channels take 14-wide planes from windows of 144 values up (7% faster), 7-
/// to 4-wide planes from any window (1.2x to 3x faster), but not 28-wide planes of shallow windows
/// (1.1x to 1.5x slower).
/// An image whose outputs would take more than 256 KiB pixel-major stays on rows: the scratch is
/// one image's outputs, and wide images fill the rows' lanes anyway.
///
/// Where the processor has AVX-512 (and `layout` is 0), the rows are AVX-512's 16-lane vectors and
/// count twice (as on a processor with two 512-bit FMA units, such as Zen 5 or a Xeon; on Zen 4
/// they are worth the same as AVX2's): the AVX2 channel tiles then take only planes whose rows
/// idle more than half of the 16 lanes, such as 7- and 4-wide ones. Not measured on such a machine.
static int usesChannelTiles(const BPWindow *g, long cOut, int layout) {
    if (layout != 0) return layout == 2;
    if (g->oh * g->ow * channelStride(cOut) > 65536) return 0;
    const double rowWidth = bp_kernels_use_avx512() ? 2.0 : 1.0;
    const double rowLanes = rowWidth * (double)g->ow / (double)(((g->ow + 15) / 16) * 16);
    return channelsFillMore(g->c * g->kh * g->kw, rowLanes, cOut);
}

/// One window position (or pixel) of a channel tile: `acc[p][v] += sources[p][at] · row[8v..8v+7]`
/// (the value broadcast), for `pixels` × `vectors` sums, constants where the caller inlines it.
/// With four vectors the broadcasts are held and each vector loaded once (12 sums + 3 + 1
/// registers); with fewer, the vectors are held and one broadcast made at a time (12 + 2 + 1).
INLINE_TARGET void channelStep(__m256 acc[CHANNEL_TILE_PIXELS][4], const float *const *sources, long at,
    const float *restrict row, const int pixels, const int vectors) {
    if (vectors >= 4) {
        __m256 x[CHANNEL_TILE_PIXELS];
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) x[p] = _mm256_broadcast_ss(sources[p] + at);
#pragma clang loop unroll(full)
        for (int v = 0; v < vectors; v++) {
            const __m256 vector = _mm256_loadu_ps(row + 8 * v);
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) acc[p][v] = _mm256_fmadd_ps(vector, x[p], acc[p][v]);
        }
    } else {
        __m256 vector[4];
#pragma clang loop unroll(full)
        for (int v = 0; v < vectors; v++) vector[v] = _mm256_loadu_ps(row + 8 * v);
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) {
            const __m256 x = _mm256_broadcast_ss(sources[p] + at);
#pragma clang loop unroll(full)
            for (int v = 0; v < vectors; v++) acc[p][v] = _mm256_fmadd_ps(vector[v], x, acc[p][v]);
        }
    }
}

/// `pixels` outputs (`base[p]`: the corner of pixel p's window in the padded image) × `vectors`
/// vectors of eight channels from `packed` (`stride` floats a window position), each summed over
/// the `k` window positions at `offsets` from the corners, then `+ shift` (when `hasBias`), stored
/// at `target[p]`. `pixels` and `vectors` are constants where the caller inlines it.
INLINE_TARGET void channelTile(const float *const *base, const long *restrict offsets, long k,
    const float *restrict packed, long stride, const float *restrict shift, int hasBias, float *const *target,
    const int pixels, const int vectors) {
    __m256 acc[CHANNEL_TILE_PIXELS][4];
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
        for (int v = 0; v < vectors; v++) acc[p][v] = _mm256_setzero_ps();
    for (long i = 0; i < k; i++) channelStep(acc, base, offsets[i], packed + i * stride, pixels, vectors);
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
        for (int v = 0; v < vectors; v++) {
            // Bias added after the sum, as the row tiles do (and nothing added without one: a sum
            // of -0 stays -0).
            const __m256 value = hasBias ? _mm256_add_ps(acc[p][v], _mm256_loadu_ps(shift + 8 * v)) : acc[p][v];
            _mm256_storeu_ps(target[p] + 8 * v, value);
        }
}

/// Channel vectors `[v0, v0 + vectors)` of every pixel of one image, `pixels` at a time; the
/// plane's last tile repeats its last pixel and stores past the plane (the scratch has room).
INLINE_TARGET void channelTiles(const float *restrict padded, const long *restrict offsets, long k,
    const float *restrict packed, long stride, const float *restrict shift, int hasBias, float *restrict pixelMajor,
    const BPWindow *g, long width, long v0, const int pixels, const int vectors) {
    const long plane = g->oh * g->ow;
    for (long q0 = 0; q0 < plane; q0 += pixels) {
        const float *base[CHANNEL_TILE_PIXELS];
        float *target[CHANNEL_TILE_PIXELS];
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) {
            const long q = q0 + p < plane ? q0 + p : plane - 1;
            base[p] = padded + (q / g->ow) * width + q % g->ow;
            target[p] = pixelMajor + (q0 + p) * stride + 8 * v0;
        }
        channelTile(base, offsets, k, packed + 8 * v0, stride, shift + 8 * v0, hasBias, target, pixels, vectors);
    }
}

/// The forward pass of images `[imageBegin, imageEnd)` in channel tiles; `scratch` holds the
/// window offsets, the padded image, the packed weights and bias and the pixel-major outputs
/// (`channelScratch`).
static TARGET void forwardImagesByChannels(const float *x, const float *w, const float *bias, float *out,
    const BPWindow *g, long cOut, long imageBegin, long imageEnd, float *scratch) {
    const long width = paddedWidth(g), plane = g->oh * g->ow;
    const long k = g->c * g->kh * g->kw, stride = channelStride(cOut), vectors = stride / 8;
    long *offsets = (long *)scratch;  // (the scratch is aligned for a long)
    float *padded = (float *)(offsets + k);
    float *packed = padded + paddedImageFloats(g);
    float *shift = packed + k * stride;
    float *pixelMajor = shift + stride;
    windowOffsets(g, width, offsets);
    for (long i = 0; i < k; i++)
        for (long o = 0; o < stride; o++) packed[i * stride + o] = o < cOut ? w[o * k + i] : 0.0f;
    for (long o = 0; o < stride; o++) shift[o] = bias && o < cOut ? bias[o] : 0.0f;
    for (long img = imageBegin; img < imageEnd; img++) {
        padImage(x, padded, g, img);
        long v0 = 0;
        for (; v0 + 4 <= vectors; v0 += 4)
            channelTiles(padded, offsets, k, packed, stride, shift, bias != NULL, pixelMajor, g, width, v0, 3, 4);
        for (; v0 + 2 <= vectors; v0 += 2)
            channelTiles(padded, offsets, k, packed, stride, shift, bias != NULL, pixelMajor, g, width, v0, 6, 2);
        for (; v0 < vectors; v0++)
            channelTiles(padded, offsets, k, packed, stride, shift, bias != NULL, pixelMajor, g, width, v0, 6, 1);
        // out[img, o, q] = pixelMajor[q, o]
        bp_transpose_strided(pixelMajor, stride, out + img * cOut * plane, plane, plane, cOut, 1);
    }
}

/// Floats of the channel tiles' scratch: the window offsets (a `long` each, two floats' room), the
/// padded image, the packed weights and bias, and the pixel-major outputs with room for the last
/// tile's repeated pixels.
static long channelScratch(const BPWindow *g, long cOut) {
    const long k = g->c * g->kh * g->kw, stride = channelStride(cOut);
    return paddedImageFloats(g) + (k + 1) * stride + 2 * k + (g->oh * g->ow + CHANNEL_TILE_PIXELS) * stride;
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

// MARK: The weight gradient by output channels

// The flat planes above hold a row's `ow` outputs in `gradientWidth` lanes: 14 of 16, but 7 of 16
// and 4 of 8 for the narrow planes of deeper layers. There, as in the forward pass's channel tiles,
// a vector holds eight output channels instead: the output's gradient is read pixel-major
// (`gT[i, p, o]`, zeros past `cOut`), each image value broadcast, and a tile of `positions` window
// positions (c, ky, kx) × `vectors` vectors of channels sums, image by image and pixel by pixel,
//
//   acc[o..o+7, position] = fma(x[i, c, y − ph + ky, x − pw + kx], gT[i, p, o..o+7], acc)
//
// one chain per weight, in order (so the same result on any number of threads: the caller's
// pieces depend on the batch alone). The bias gradient is one chain of additions per channel, in
// the same order. These are other sums than the flat planes' (where each lane takes every eighth
// column), so the choice between the two depends on the shapes alone.

/// Floats of one image in the channel weight gradient: padded, and its gradient pixel-major.
static long gradientChannelImageFloats(const BPWindow *g, long cOut) {
    return paddedImageFloats(g) + g->oh * g->ow * channelStride(cOut);
}

/// Whether the weight gradient runs by output channels (`layout` 0: where `channelsFillMore` than
/// the flat planes, whose rows of `gradientWidth` lanes hold `ow` outputs, and an image's padded
/// values and gradient fit in 128 KiB; 1: flat planes; 2: channels). Each tile reads every image
/// of the piece again: a 32 × 32 image of 16 channels into 32 (200 KiB) took 5% longer by
/// channels, though its lanes are fuller (Benchmarks/conv_tiles.sh, Zen 1). So channels take the
/// 14-wide planes of the cnn preset's second layer (9% faster), 7- to 4-wide planes (1.3x to 2x).
static int gradientUsesChannels(const BPWindow *g, long cOut, int layout) {
    if (layout != 0) return layout == 2;
    if (gradientChannelImageFloats(g, cOut) > 32768) return 0;
    return channelsFillMore(g->c * g->kh * g->kw, (double)g->ow / (double)gradientWidth(g), cOut);
}

/// Weights `[position0, position0 + positions)` (window positions, the last ones repeated past
/// `k`) × channel vectors `[v0, v0 + vectors)`, summed over images `[0, m)`: `padded` holds each
/// image as `padImage` lays it out (`imageSize` floats apart), `gT` each image's gradient
/// pixel-major (`gSize` floats apart, `stride` a pixel), `pixels[p]` pixel p's corner in a padded
/// plane. `positions` and `vectors` are constants where the caller inlines it.
INLINE_TARGET void gradientChannelTile(const float *restrict padded, long imageSize, const float *restrict gT,
    long gSize, long m, const long *restrict offsets, long k, long position0, const long *restrict pixels, long plane,
    long stride, long v0, float *restrict wg, long cOut, const int positions, const int vectors) {
    __m256 acc[CHANNEL_TILE_PIXELS][4];
#pragma clang loop unroll(full)
    for (int j = 0; j < positions; j++)
#pragma clang loop unroll(full)
        for (int v = 0; v < vectors; v++) acc[j][v] = _mm256_setzero_ps();
    long at[CHANNEL_TILE_PIXELS];
#pragma clang loop unroll(full)
    for (int j = 0; j < positions; j++) at[j] = offsets[position0 + j < k ? position0 + j : k - 1];
    for (long img = 0; img < m; img++) {
        const float *image = padded + img * imageSize;
        const float *gradient = gT + img * gSize + 8 * v0;
        const float *corner[CHANNEL_TILE_PIXELS];
#pragma clang loop unroll(full)
        for (int j = 0; j < positions; j++) corner[j] = image + at[j];
        for (long p = 0; p < plane; p++) channelStep(acc, corner, pixels[p], gradient + p * stride, positions, vectors);
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < positions; j++) {
        if (position0 + j >= k) break;
#pragma clang loop unroll(full)
        for (int v = 0; v < vectors; v++) {
            float lanes[8];
            _mm256_storeu_ps(lanes, acc[j][v]);
            for (long lane = 0; lane < 8; lane++) {
                const long o = 8 * (v0 + v) + lane;
                if (o < cOut) wg[o * k + position0 + j] = lanes[lane];
            }
        }
    }
}

/// Every window position of channel vectors `[v0, v0 + vectors)`, `positions` at a time.
INLINE_TARGET void gradientChannelTiles(const float *restrict padded, long imageSize, const float *restrict gT,
    long gSize, long m, const long *restrict offsets, long k, const long *restrict pixels, long plane, long stride,
    long v0, float *restrict wg, long cOut, const int positions, const int vectors) {
    for (long position0 = 0; position0 < k; position0 += positions)
        gradientChannelTile(padded, imageSize, gT, gSize, m, offsets, k, position0, pixels, plane, stride, v0, wg, cOut,
            positions, vectors);
}

/// Floats of the channel weight gradient's scratch for `m` images: window offsets and pixel
/// corners (a `long` each, two floats' room), the padded images and the pixel-major gradients.
static long gradientChannelScratch(const BPWindow *g, long cOut, long m) {
    return 2 * (g->c * g->kh * g->kw + g->oh * g->ow) + m * gradientChannelImageFloats(g, cOut);
}

static TARGET void weightGradientImagesByChannels(const float *x, const float *gOut, float *wg, float *bg,
    const BPWindow *g, long cOut, long imageBegin, long imageEnd, float *scratch) {
    const long m = imageEnd - imageBegin, width = paddedWidth(g);
    const long k = g->c * g->kh * g->kw, plane = g->oh * g->ow, stride = channelStride(cOut), vectors = stride / 8;
    const long imageSize = paddedImageFloats(g), gSize = plane * stride;
    long *offsets = (long *)scratch;  // (the scratch is aligned for a long)
    long *pixels = offsets + k;
    float *padded = (float *)(pixels + plane);
    float *gT = padded + m * imageSize;
    windowOffsets(g, width, offsets);
    for (long p = 0; p < plane; p++) pixels[p] = (p / g->ow) * width + p % g->ow;
    for (long img = imageBegin; img < imageEnd; img++) {
        padImage(x, padded + (img - imageBegin) * imageSize, g, img);
        // The image's gradient, pixel-major (gT[p, o] = gOut[img, o, p]), zero past cOut.
        float *target = gT + (img - imageBegin) * gSize;
        bp_transpose_strided(gOut + img * cOut * plane, plane, target, stride, cOut, plane, 1);
        for (long p = 0; p < plane; p++)
            for (long o = cOut; o < stride; o++) target[p * stride + o] = 0.0f;
    }
    long v0 = 0;
    for (; v0 + 4 <= vectors; v0 += 4)
        gradientChannelTiles(padded, imageSize, gT, gSize, m, offsets, k, pixels, plane, stride, v0, wg, cOut, 3, 4);
    for (; v0 + 2 <= vectors; v0 += 2)
        gradientChannelTiles(padded, imageSize, gT, gSize, m, offsets, k, pixels, plane, stride, v0, wg, cOut, 6, 2);
    for (; v0 < vectors; v0++)
        gradientChannelTiles(padded, imageSize, gT, gSize, m, offsets, k, pixels, plane, stride, v0, wg, cOut, 6, 1);
    if (bg) {
        // b.g[o] = Σ_i Σ_p gT[i, p, o]: one chain of additions per channel, images then pixels.
        for (long v = 0; v < vectors; v++) {
            __m256 sum = _mm256_setzero_ps();
            for (long i = 0; i < m * plane; i++) sum = _mm256_add_ps(sum, _mm256_loadu_ps(gT + i * stride + 8 * v));
            float lanes[8];
            _mm256_storeu_ps(lanes, sum);
            for (long lane = 0; lane < 8 && 8 * v + lane < cOut; lane++) bg[8 * v + lane] = lanes[lane];
        }
    }
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

long bp_conv_direct_scratch(const BPWindow *g, long cOut) {
#if defined(__x86_64__) || defined(_M_X64)
    return usesChannelTiles(g, cOut, 0) ? channelScratch(g, cOut) : paddedImageFloats(g);
#else
    (void)g;
    (void)cOut;
    return 0;
#endif
}

long bp_conv_direct_gradient_scratch(const BPWindow *g, long cOut, long images) {
#if defined(__x86_64__) || defined(_M_X64)
    const long rows = images * (g->c * gradientImagePlane(g) + cOut * gradientOutputPlane(g));
    const long channels = gradientChannelScratch(g, cOut, images);
    return rows > channels ? rows : channels;
#else
    (void)g;
    (void)cOut;
    (void)images;
    return 0;
#endif
}

int bp_conv_direct_forward(const float *x, const float *w, const float *bias, float *out, const BPWindow *g,
    long cOut, long imageBegin, long imageEnd, int layout) {
#if defined(__x86_64__) || defined(_M_X64)
    if (usesChannelTiles(g, cOut, layout)) {
        float *scratch = bp_thread_scratch(channelScratch(g, cOut));
        if (!scratch) return 0;
        forwardImagesByChannels(x, w, bias, out, g, cOut, imageBegin, imageEnd, scratch);
    } else {
        float *padded = bp_thread_scratch(paddedImageFloats(g));
        if (!padded) return 0;
        if (bp_kernels_use_avx512() && layout == 0) {
            forwardImages512(x, w, bias, out, g, cOut, imageBegin, imageEnd, padded);
        } else {
            forwardImages(x, w, bias, out, g, cOut, imageBegin, imageEnd, padded);
        }
    }
    return 1;
#else
    (void)x, (void)w, (void)bias, (void)out, (void)g, (void)cOut, (void)imageBegin, (void)imageEnd, (void)layout;
    return 0;
#endif
}

int bp_conv_direct_weight_gradient(const float *x, const float *gOut, float *wg, float *bg, const BPWindow *g,
    long cOut, long imageBegin, long imageEnd, int layout) {
#if defined(__x86_64__) || defined(_M_X64)
    const long m = imageEnd - imageBegin;
    if (gradientUsesChannels(g, cOut, layout)) {
        float *scratch = bp_thread_scratch(gradientChannelScratch(g, cOut, m));
        if (!scratch) return 0;
        weightGradientImagesByChannels(x, gOut, wg, bg, g, cOut, imageBegin, imageEnd, scratch);
    } else {
        float *scratch = bp_thread_scratch(m * (g->c * gradientImagePlane(g) + cOut * gradientOutputPlane(g)));
        if (!scratch) return 0;
        weightGradientImages(x, gOut, wg, bg, g, cOut, imageBegin, imageEnd, scratch);
    }
    return 1;
#else
    (void)x, (void)gOut, (void)wg, (void)bg, (void)g, (void)cOut, (void)imageBegin, (void)imageEnd, (void)layout;
    return 0;
#endif
}
