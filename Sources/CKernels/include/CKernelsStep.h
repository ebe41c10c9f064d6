// The small parts of a training step besides the matrix products (Step.c): gathering a minibatch's
// rows from the training set, and plain SGD's update.
#ifndef BACKPROP_CKERNELS_STEP_H
#define BACKPROP_CKERNELS_STEP_H

#ifdef __cplusplus
extern "C" {
#endif

/// Rows `indices[0 ..< rows]` of `source` (rows of `rowSize` floats) copied in order into
/// `destination`: `destination[r, k] = source[indices[r], k]`. While row `r` is copied, row `r + 4`
/// is fetched into the L2 cache: the rows of a minibatch lie scattered over the training set, and a
/// row whose loads start before it is needed arrives sooner than one fetched on demand. The caller
/// may let it read `visible ≥ rows` indices (the rest of the batch, when it copies one piece of
/// it): the rows past this piece are then fetched too, and the next piece's first rows arrive early.
void bp_gather_rows(
    float *destination, const float *source, const long *indices, long rows, long visible, long rowSize);

/// Asks the processor to fetch the first `lines` cache lines (64 bytes) of each row
/// `indices[0 ..< rows]` of `source` (rows of `rowSize` floats), and changes nothing: the next
/// batch's rows, requested while this step computes, start arriving before they are gathered.
void bp_prefetch_rows(const float *source, const long *indices, long rows, long rowSize, long lines);

/// SGD's update of `count` elements in one pass, each as the scalar loop computes it, every
/// operation rounded as written (no fused multiply-add), eight elements at a time with AVX2:
/// without `velocity` (NULL), `w[i] = w[i]·decay − lr·g[i]`; with it,
/// `velocity[i] = momentum·velocity[i] + g[i]`, then `w[i] = w[i]·decay − lr·velocity[i]`.
void bp_sgd_update(float *w, float *velocity, const float *g, long count, float decay, float lr, float momentum);

#ifdef __cplusplus
}
#endif

#endif
