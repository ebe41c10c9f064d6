// Matrix-product kernels in C with AVX2 and FMA, or AVX-512, chosen at run time (see Gemm.c).
//
// Swift cannot ask for AVX2 code generation in a package that other packages depend on (the
// flags would be `unsafeFlags`), so these kernels are compiled with a per-function `target`
// attribute and called only after `bp_gemm_avx2_available()` says the CPU runs them. Anywhere
// else (another architecture, an older CPU) they are never called, and Backprop uses BLAS or its
// pure-Swift kernel.
#ifndef BACKPROP_CKERNELS_H
#define BACKPROP_CKERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

/// The operands of `C = A • B (+ bias)`, or `C += A • B` when `accumulate`, on raw memory.
///
/// `A` is `m × k`: element `(i, p)` at `a[i * rowStrideA + p * columnStrideA]` (so a transposed
/// view is `rowStrideA = 1`). `B` is `k × n`: element `(p, j)` at
/// `b[p * rowStrideB + j * columnStrideB]`. `C` is row-major `m × n` with row stride `ldc`.
typedef struct BPGemm {
    long m, n, k;
    const float *a;
    long rowStrideA, columnStrideA;
    const float *b;
    long rowStrideB, columnStrideB;
    float *c;
    long ldc;
    /// `NULL`, or `n` values added to every row of the product.
    const float *bias;
    /// Nonzero: `C += A • B` instead of `C = A • B`.
    int accumulate;
    /// Nonzero: write `C` with non-temporal stores, bypassing the caches (for a large result
    /// that is not read again soon, such as the seed's `x.g`).
    int streaming;
} BPGemm;

/// 1 if this CPU and operating system run AVX2 and FMA instructions, else 0.
int bp_gemm_avx2_available(void);

/// Computes rows `[rowBegin, rowEnd)` and columns `[columnBegin, columnEnd)` of `C`.
///
/// Threads may call it at the same time on disjoint ranges of the same product. `rowBegin`
/// should be a multiple of 6 and `columnBegin` a multiple of 16 (the tile size) for speed; any
/// value is correct, and gives each element the same bits as one call for all of C. Call only
/// when `bp_gemm_avx2_available()` returned 1.
void bp_gemm_avx2(const BPGemm *gemm, long rowBegin, long rowEnd, long columnBegin, long columnEnd);

/// `T = Aᵀ-major product for a long depth`: for `0 ≤ j < n`, `0 ≤ i < m`,
/// `t[j * ldt + i] = Σ_p a[p * lda + i] · b[p * rowStrideB + j * columnStrideB]`, `0 ≤ p < k`.
///
/// This is `C = A • B` for an `A` stored transposed (`xᵀ`, whose element `(i, p)` is
/// `a[p * lda + i]`), written as its transpose `T = Cᵀ`: the shape of the seed's
/// `w1.g = xᵀ • out.g`, a small result summed over a long depth. `t` must hold
/// `bp_gemm_tn_rows(n)` rows of `ldt ≥ bp_gemm_tn_columns(m)` floats; the rows and columns past
/// `n` and `m` are scratch. Call only when `bp_gemm_avx2_available()` returned 1.
void bp_gemm_tn_avx2(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt);

/// 1 if this CPU and operating system also run AVX-512F instructions (with AVX2 and FMA), else 0.
int bp_gemm_avx512_available(void);

/// Whether the kernels that choose their instructions themselves (`bp_adam_update`, the direct
/// convolution's forward pass, `bp_softmax_rows`) take their AVX-512 paths: 1 when
/// `bp_gemm_avx512_available()` and not turned off by `bp_kernels_allow_avx512(0)`. Their AVX-512
/// and AVX2 paths give the same bits.
int bp_kernels_use_avx512(void);

/// Lets (1, the default) or stops (0) those kernels taking their AVX-512 paths: for tests that
/// compare the two paths on one machine.
void bp_kernels_allow_avx512(int allowed);

/// `bp_gemm_avx2` with 16-lane vectors: the same blocking and the same sums in the same order, so
/// the same bits. Call only when `bp_gemm_avx512_available()` returned 1.
void bp_gemm_avx512(const BPGemm *gemm, long rowBegin, long rowEnd, long columnBegin, long columnEnd);

/// `bp_gemm_tn_avx2` with 16-lane vectors (the same `t`, bit for bit). Call only when
/// `bp_gemm_avx512_available()` returned 1.
void bp_gemm_tn_avx512(long m, long n, long k, const float *a, long lda, const float *b, long rowStrideB,
    long columnStrideB, float *t, long ldt);

/// The rows `bp_gemm_tn_avx2` needs in `t` for `n` columns of B (a multiple of its tile).
long bp_gemm_tn_rows(long n);

/// The smallest `ldt` `bp_gemm_tn_avx2` accepts for `m` rows of C (a multiple of its tile).
long bp_gemm_tn_columns(long m);

/// One iteration of a parallel loop: `body(context, index)`.
typedef void (*bp_iteration)(void *context, long index);

/// Calls `body(context, index)` for each `index` in `0..<count`, on up to `threads` threads (the
/// caller and the pool's helpers, which take the next index as they come free), and returns when
/// all are done. A call made inside an iteration, or while another thread's loop runs, runs
/// serially on the calling thread. See Pool.c.
void bp_parallel_for(long count, int threads, bp_iteration body, void *context);

/// Starts `body(context, index)` for each `index` in `0..<count` as background work: the pool's
/// helpers run its iterations, one at a time, whenever they have no loop of `bp_parallel_for` to
/// run, while the caller goes on. Returns a handle for `bp_background_finish`, or NULL when the
/// work could not be handed out (one thread, another background loop already out, no memory):
/// then every iteration has already run, on the caller, before the return. `context` must stay
/// valid, and the iterations' data untouched by the caller, until the finish. See Pool.c.
void *bp_background_start(long count, int threads, bp_iteration body, void *context);

/// Runs on the caller the iterations of `handle`'s loop that no helper has taken, waits for those
/// that helpers are running, and frees the handle; afterwards every iteration is done and visible
/// to the caller. NULL: returns at once.
void bp_background_finish(void *handle);

/// The loops `bp_parallel_for` has handed to the pool's helpers since the process started (those
/// run serially on the caller are not counted).
long bp_parallel_dispatch_count(void);

/// Of those, the loops that found a helper asleep and woke it (a condition-variable broadcast).
long bp_parallel_wake_count(void);

/// The nanoseconds the callers of `bp_parallel_for` have spent, since the process started, waiting
/// for helpers to finish their indices after the last index was taken (a helper that joined late
/// or ran a slower piece; loops whose helpers were done by then cost nothing here).
long bp_parallel_wait_nanoseconds(void);

/// Maps the work buffers of OpenBLAS that `slots` threads calling `sgemm` at once will use, if it
/// has not been done: 1 when they are there (or the BLAS needs none), 0 when the memory for them
/// cannot be had (a limit such as `ulimit -v`). OpenBLAS itself would retry a failed mapping for
/// ever (see BLASBuffers.c). Safe to call from any thread; quick once done.
int bp_blas_reserve_buffers(int slots);

/// The bytes `bp_blas_reserve_buffers(slots)` would still map (0 once done): for a message.
unsigned long bp_blas_buffer_bytes(int slots);

// Sliding windows over row-major NCHW images (Im2col.c). Threads may call each kernel at the
// same time on disjoint ranges.

/// Where `kh × kw` windows, `sh`, `sw` apart, sit on `[n, c, h, w]` images padded by `ph`, `pw`
/// zeros: `oh = (h + 2 ph - kh) / sh + 1` windows down, `ow` across. Pooling uses it with `c = 1`
/// (each plane an image), square windows and no padding.
typedef struct BPWindow {
    long n, c, h, w;
    long kh, kw, sh, sw, ph, pw;
    long oh, ow;
} BPWindow;

/// im2col: rows `(img, oy, 0..<ow)` of `cols` (`[n * oh * ow, c * kh * kw]`, columns
/// `(ch, ky, kx)`) for each line `(img, oy)` in `[lineBegin, lineEnd)`; 0 over the padding.
void bp_im2col(const float *x, float *cols, const BPWindow *window, long lineBegin, long lineEnd);

/// col2im: images `[imageBegin, imageEnd)` of `y` (`[n, c, h, w]`), each element the sum of
/// the entries of `cols` that unfold would have copied from it.
void bp_col2im(const float *cols, float *y, const BPWindow *window, long imageBegin, long imageEnd);

/// col2im from one image's window gradients in the planar layout, `(c·kh·kw)` rows of `oh·ow`
/// values `ld` apart: `y` (`[c, h, w]`) is set to the sum at each element of the values that
/// unfold would have copied from it (window `(oy, ox)`, offset `(ky, kx)`).
void bp_col2im_planar(const float *d, long ld, float *y, const BPWindow *window);

/// What ``bp_out_of_memory`` calls: ends the program (or the thread) and never returns. Its
/// arguments are the bytes asked for and what they were for ("the packing buffer of a matrix
/// product").
typedef void (*bp_out_of_memory_handler)(long bytes, const char *purpose);

/// Installs the handler the kernels call when the system refuses them memory (NULL: the default,
/// a message on stderr and `abort()`). A handler also sets aside the emergency reserve
/// (``bp_release_memory_reserve``). Safe to call from any thread (Memory.c).
void bp_set_out_of_memory_handler(bp_out_of_memory_handler handler);

/// Gives back the emergency reserve: 4 MiB of address space (mapped without access, so it costs
/// no memory) set aside when a handler is installed, so that a program that has run out can still
/// allocate what it takes to say so (a message's strings). Idempotent; safe from any thread.
void bp_release_memory_reserve(void);

/// Reports that `bytes` for `purpose` could not be had, through the installed handler, after
/// giving back the emergency reserve; never returns. The kernels call it instead of `abort()`
/// where an allocation fails.
void bp_out_of_memory(long bytes, const char *purpose) __attribute__((noreturn));

/// 1 when `bytes` and 16 MiB more of address space can be had, or when the address space is not
/// limited (`ulimit -v`, checked once); 0 when not. A tensor asks before its allocation, so that
/// under a limit it is refused (one line) while Swift's own small allocations still succeed (a
/// trap). Memory.c.
int bp_address_space_has_room(long bytes);

/// Whether the soft stack limit (RLIMIT_STACK, `ulimit -s`) is below `bytes` (Stack.c).
int bp_stack_limit_below(long bytes);

/// Runs `body(context)` on a new thread with a stack of `bytes`, which RLIMIT_STACK does not
/// bound, and waits for it; threads created afterwards get stacks of `bytes` by default (glibc).
/// Returns 0 when it ran, else the error that kept the thread from being created (`EAGAIN` under
/// `ulimit -u`, `ENOMEM` when its stack cannot be mapped, `EINVAL`), without running `body`.
int bp_run_on_stack(long bytes, void (*body)(void *), void *context);

/// Says on stderr, in one line, that the stack limit is small and a thread with a stack of
/// `bytes` could not be started (`error`, from ``bp_run_on_stack``), then ends the process with
/// status 1. Allocates nothing.
void bp_refuse_small_stack(long bytes, int error) __attribute__((noreturn));

/// The kinds of buffer a thread keeps from call to call: the product's packing buffer (Gemm.c)
/// and the convolutions' scratch (``bp_thread_scratch``).
enum { BP_THREAD_BUFFER_PACKING = 0, BP_THREAD_BUFFER_SCRATCH = 1, BP_THREAD_BUFFER_KINDS = 2 };

/// Frees `buffer`, this thread's kept buffer of that kind, when the thread ends (replacing the
/// buffer given before for that kind, which its owner has freed).
void bp_free_at_thread_exit(int kind, void *buffer);

/// This thread's scratch buffer of at least `count` floats (64-byte aligned), kept and grown from
/// call to call, or NULL when memory runs out. Valid until this thread's next call.
float *bp_thread_scratch(long count);

/// Max pooling of planes `[planeBegin, planeEnd)` (`[h, w]` each): the maximum of each window,
/// where it sits in the plane (`iy * w + ix`, the first at a tie, row-major), and its offset in the
/// window (`ky * kh + kx`), or -1 where two elements of the window hold the maximum. With padding
/// (`ph = pw ≤ kh / 2`) a window is clipped to the plane: the padding never wins.
void bp_max_pool(const float *x, float *out, int *winners, int *pieces, const BPWindow *window, long planeBegin,
    long planeEnd);

/// Max pooling's backward on planes `[planeBegin, planeEnd)`: `gInp` zeroed, then each output's
/// gradient added at its winner.
void bp_max_pool_backward(const float *gOut, const int *winners, float *gInp, const BPWindow *window,
    long planeBegin, long planeEnd);

/// Average pooling of planes `[planeBegin, planeEnd)`: the mean of each window. With
/// `countPadding` the padding counts as zeros (the sum over the window's part in the plane, divided
/// by `kh²`); without, it is left out (that mean times `kh² / count`, `count` the number of its
/// elements).
void bp_avg_pool(const float *x, float *out, const BPWindow *window, int countPadding, long planeBegin, long planeEnd);

/// Average pooling's backward on planes `[planeBegin, planeEnd)`: `gInp` zeroed, then each
/// output's gradient, divided by `kh²` (with `countPadding`; without, first multiplied by
/// `kh² / count`, `count` the number of its window's elements in the plane), added to every
/// element of its window in the plane.
void bp_avg_pool_backward(
    const float *gOut, float *gInp, const BPWindow *window, int countPadding, long planeBegin, long planeEnd);

/// `sums[i] = Σ_r Double(rows[r · columns + i])` for `i` in `0..<columns`, over `count` rows
/// (Sums.c): each column summed from 0 in row order, every addition rounded in Double, so the bits
/// of the plain loop on every CPU (AVX2 only runs four columns at once).
void bp_sum_columns(const float *rows, long count, long columns, double *sums);

/// Batch normalisation's `Σ Double(x[i])` over `count` values: four Double lanes (lane j adds the
/// elements i ≡ j mod 4 in order), then `0 + lane 0 + lane 1 + lane 2 + lane 3`, then the tail in
/// order (BatchNorm.c). The same bits on every CPU.
double bp_bn_sum(const float *x, long count);

/// `Σ (Double(x[i]) − mean)²`, summed as ``bp_bn_sum`` sums.
double bp_bn_squared_deviations(const float *x, long count, double mean);

/// `sums[0] = Σ Double(g[i])`, `sums[1] = Σ Double(g[i] · xhat[i])` with `xhat[i] = (x[i] − mean) ·
/// invStd` in Float, each summed as ``bp_bn_sum`` sums.
void bp_bn_gradient_sums(const float *g, const float *x, long count, float mean, float invStd, double *sums);

/// `out[i] = (x[i] − mean) · scale + shift` in Float, each operation rounded (no fused multiply-add).
void bp_bn_normalize(const float *x, float *out, long count, float mean, float scale, float shift);

/// `out[i] = scale · ((g[i] − meanG) − xhat · meanGXhat)` with `xhat = (x[i] − mean) · invStd`, in
/// Float, each operation rounded (no fused multiply-add).
void bp_bn_input_gradient(const float *g, const float *x, float *out, long count, float mean, float invStd,
    float meanG, float meanGXhat, float scale);

/// The passes above over `rows` whole rows of `c` features, `x[r·c + k]` (BatchNorm1d's layout), per
/// feature `k` the same operations in row order as the functions above over each row's one value:
/// `sums[k] += Double(x[r·c + k])` for each row in order (BatchNorm.c).
void bp_bn_rows_sum(const float *x, long rows, long c, double *sums);

/// `squares[k] += (Double(x[r·c + k]) − mean[k])²` for each row in order.
void bp_bn_rows_squared_deviations(const float *x, long rows, long c, const double *mean, double *squares);

/// `sumG[k] += Double(g[r·c + k])`, `sumGXhat[k] += Double(g[r·c + k] · xhat)` with `xhat =
/// (x[r·c + k] − mean[k]) · invStd[k]` in Float, for each row in order.
void bp_bn_rows_gradient_sums(const float *g, const float *x, long rows, long c, const float *mean,
    const float *invStd, double *sumG, double *sumGXhat);

/// `out[r·c + k] = (x[r·c + k] − mean[k]) · scale[k] + shift[k]`, as ``bp_bn_normalize``.
void bp_bn_rows_normalize(const float *x, float *out, long rows, long c, const float *mean, const float *scale,
    const float *shift);

/// `out[r·c + k] = scale[k] · ((g − meanG[k]) − xhat · meanGXhat[k])`, as ``bp_bn_input_gradient``.
void bp_bn_rows_input_gradient(const float *g, const float *x, float *out, long rows, long c, const float *mean,
    const float *invStd, const float *meanG, const float *meanGXhat, const float *scale);

/// The parts of a softmax over `rows` rows of `classes` logits (Softmax.c), in Double: each row's
/// maximum `maxima[i] = m_i` (NaNs passed over), `exponentials[i, j] = exp((double)x[i, j] - m_i)`,
/// and `sums[i]`, their sum in index order. A row whose maximum is not finite gets NaN exponentials
/// and sum. Each exponential is within one unit in the last place of the correctly rounded value,
/// with the same bits on every CPU (AVX-512, AVX2 or neither).
void bp_softmax_rows(const float *x, long rows, long classes, float *maxima, double *sums, double *exponentials);

/// One exponential as `bp_softmax_rows` computes it, for `t ≤ 0` (or NaN): the scalar path.
double bp_exp_nonpositive(double t);

/// The activations `bp_activation` computes.
enum {
    /// `out = 1 / (1 + e^-x)`.
    BP_ACTIVATION_SIGMOID = 0,
    /// `out = x · sigmoid(x)`.
    BP_ACTIVATION_SILU = 1,
    /// `out = g · s · (1 + x · (1 - s))`, `s = sigmoid(x)`: SiLU's input gradient from its output's `g`.
    BP_ACTIVATION_SILU_BACKWARD = 2,
    /// `out = tanh(x)`.
    BP_ACTIVATION_TANH = 3,
    /// `out = x · Φ(x)`, Φ the standard normal distribution function (GELU, exact form).
    BP_ACTIVATION_GELU = 4,
    /// `out = g · (Φ(x) + x · φ(x))`, φ the normal density: GELU's input gradient from its output's `g`.
    BP_ACTIVATION_GELU_BACKWARD = 5,
};

/// `out[i]` = the activation `kind` of `x[i]` (and `g[i]` for the two `…_BACKWARD` kinds; `g` is
/// not read, and may be NULL, for the others), `0 ≤ i < count` (Activations.c): the formula in Double
/// from an exponential with a relative error below 10⁻¹⁴, rounded to Float once (each within one ulp of
/// the correctly rounded value, nearly always equal to it). `vectors` 0 takes the scalar path (for
/// tests), 1 the widest the processor has (AVX-512, AVX2); every path gives the same bits.
void bp_activation(int kind, const float *x, const float *g, float *out, long count, int vectors);

/// One step of Adam (Optimizers.c): its constants, the same for every element of every parameter.
typedef struct BPAdamStep {
    float beta1, beta2, oneMinusBeta1, oneMinusBeta2;
    /// `1 − lr·wd` for a decayed matrix, 1 for a vector.
    float decay;
    /// `lr / (1 − β₁ᵗ)`.
    float stepSize;
    /// `1 / √(1 − β₂ᵗ)`.
    float inverseCorrection2;
    float epsilon;
} BPAdamStep;

/// Adam's update of `count` elements in one pass, each as the scalar loop computes it, every
/// operation rounded as written (no fused multiply-add; IEEE square root and division):
/// `m = β₁·m + (1−β₁)·g`, `v = β₂·v + (1−β₂)·(g·g)`,
/// `w = w·decay − stepSize·(m / (√v·inverseCorrection2 + ε))`. The same bits on every CPU.
void bp_adam_update(float *w, float *m, float *v, const float *g, long count, const BPAdamStep *step);

/// 1 if the direct convolution (DirectConv.c) runs for this geometry on this CPU: stride 1, a
/// nonempty output, and AVX2 with FMA. Otherwise its functions must not be called.
int bp_conv_direct_available(const BPWindow *window);

/// The floats of this thread's scratch that the direct convolution's forward pass into `cOut`
/// output channels uses (as `bp_conv_direct_forward` chooses its tiles with `layout` 0).
long bp_conv_direct_scratch(const BPWindow *window, long cOut);

/// The floats of this thread's scratch that the direct weight gradient uses for `images` images
/// and `cOut` output channels (at most, whichever layout it takes).
long bp_conv_direct_gradient_scratch(const BPWindow *window, long cOut, long images);

/// The direct convolution of images `[imageBegin, imageEnd)` at stride 1: `out` (`[n, cOut, oh, ow]`)
/// `= b[o] + Σ_{c, ky, kx} w[o, c, ky, kx] · x[i, c, y − ph + ky, x − pw + kx]` (0 outside the image),
/// from `x` (`[n, c, h, w]`), `w` (`[cOut, c, kh, kw]`) and `bias` (`[cOut]` or NULL). Each output is
/// one fused multiply-add chain over `(c, ky, kx)` from 0, then `+ b[o]`: the same bits whichever
/// tiles compute it. `layout`: 0 chooses (the tiles that fill more lanes: a row's outputs, in
/// AVX-512 where the processor has it, or eight channels of a pixel), 1 takes rows of outputs in
/// AVX2, 2 channels in AVX2 (for the tests). Returns 0 (and writes nothing) when the thread's
/// scratch memory cannot be had, else 1.
int bp_conv_direct_forward(const float *x, const float *w, const float *bias, float *out, const BPWindow *window,
    long cOut, long imageBegin, long imageEnd, int layout);

/// The direct convolution's weight and bias gradients over images `[imageBegin, imageEnd)`:
/// `wg[o, c, ky, kx] = Σ gOut[i, o, y, x] · x[i, c, y − ph + ky, x − pw + kx]` (`[cOut, c, kh, kw]`) and
/// `bg[o] = Σ gOut[i, o, y, x]` (skipped when NULL), overwritten. `layout`: 0 chooses by the shapes
/// (flat planes of rows, eight lanes each taking every eighth column; or eight output channels a
/// vector, one chain per weight), 1 takes flat planes, 2 channels (for the tests): two orders of
/// the same sums, each the same on any number of threads. Returns 0 (and writes nothing) when the
/// thread's scratch memory cannot be had, else 1.
int bp_conv_direct_weight_gradient(const float *x, const float *gOut, float *wg, float *bg, const BPWindow *window,
    long cOut, long imageBegin, long imageEnd, int layout);

/// Matrices `[matrixBegin, matrixEnd)` of a batch of `rows × columns` matrices `x`, transposed into
/// `y` (`columns × rows` each): `y[m][j][i] = x[m][i][j]`. NHWC to NCHW and back. `avx2`: nonzero
/// to use AVX2 (only where `bp_gemm_avx2_available()` returned 1).
void bp_transpose(const float *x, float *y, long rows, long columns, long matrixBegin, long matrixEnd, int avx2);

/// One `rows × columns` block of `a` (rows `lda` floats apart) transposed into `t` (rows `ldt`
/// floats apart): `t[j * ldt + i] = a[i * lda + j]`; `bp_transpose` of one matrix, for blocks
/// inside wider arrays (the direct convolution's pixel-major scratch). `avx2` as there.
void bp_transpose_strided(const float *a, long lda, float *t, long ldt, long rows, long columns, int avx2);

#ifdef __cplusplus
}
#endif

// The measurements of the machine's limits (`backprop bench`), in their own header.
#include "CKernelsPeak.h"

// Gathering a minibatch's rows and SGD's update (Step.c), in their own header.
#include "CKernelsStep.h"

#endif
