#!/usr/bin/env python3
"""Write the fixtures that check the convnet layers (Conv2d, pooling, Flatten, BatchNorm, activations).

numpy only, float64, written independently of Backprop: no im2col, no shared code with the Swift
kernels. Each layer is computed the most obvious way (a convolution slides its kernel over the
padded image one output position at a time; a pooling window is sliced out and reduced), and each
backward by scattering `out.g` back through the same windows. Every analytic gradient is then
checked here against central finite differences of the float64 forward (h = 1e-6), so a wrong
formula in this script stops it instead of landing in a fixture. Run from anywhere:

    python3 Tests/BackpropTests/Fixtures/make_layer_fixtures.py

The safetensors files are written by hand with `write_safetensors` from make_fixtures.py (an 8-byte
little-endian header length, a JSON header padded with spaces, then the data). Inputs are drawn
from fixed numpy seeds and stored as F32; the expected results are computed in float64 from exactly
those float32 values and stored as F32.

Every case `NAME` of a file holds, besides its inputs:
    NAME.out.g                  the upstream gradient handed to the layer (random normal)
    NAME.out                    the forward's output
    NAME.x.g, NAME.w.g, ...     the gradients of sum(out * out.g) with respect to each input
and the file's __metadata__ maps NAME to the layer's arguments (e.g. "stride=2 padding=1 bias=yes"),
which the Swift tests compare with their own table of cases.

Dimension letters: n batch, c channels (cIn, cOut), h, w image height and width, kh, kw kernel,
oh, ow output height and width.

Files
-----
layers_conv2d.safetensors      Conv2d (PyTorch's F.conv2d, weight (cOut, cIn, kh, kw))
    NAME.x (n, cIn, h, w), NAME.w (cOut, cIn, kh, kw), NAME.b (cOut) unless bias=no,
    NAME.out (n, cOut, oh, ow), NAME.out.g, NAME.x.g, NAME.w.g, NAME.b.g
        out[i, o, y, x] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] * xpad[i, c, y*s + ky, x*s + kx]
        oh = (h + 2p - kh) // s + 1, ow = (w + 2p - kw) // s + 1, xpad = x with p zeros on each side
    cases: stride 1 and 2, padding 0, 1 and 2, odd images (7x5, 9x7, 5x5), 1x1 kernels (also with
    stride 2 and padding 1, where the border outputs are the bias alone), a 2x3 kernel, batch 1,
    channels 1 and 3, one case without bias, and images whose last rows/columns no window reaches.

layers_maxpool2d.safetensors   MaxPool2d (floor mode; padding that never wins)
    NAME.x (n, c, h, w), NAME.out (n, c, oh, ow), NAME.out.g, NAME.x.g,
    NAME.pieces (n, c, oh, ow) I32: the offset ky * k + kx of each window's maximum, -1 if tied.
        out = max over the window; x.g gets out.g at the window's FIRST maximum in row-major order
        (np.argmax of the flattened window, as PyTorch's CPU kernel), summed over windows.
    cases: kernel 2 stride 2 (odd width: the last column is in no window), kernel 3 stride 2
    (overlapping windows), and two cases of small integers with planted ties (kernel 2 and kernel 3
    stride 2), including windows where every element is equal. Outside the tie cases every window's
    two largest values differ by at least 1e-3. Padded cases: kernel 3 stride 2 padding 1 (ResNet's
    stem), kernel 2 padding 1 (corner windows of one element), kernel 5 stride 1 padding 2 (windows
    larger than the image), an image of negative values only (a zero padding would win), ties with
    padding, and a window of -inf only (its gradient goes to its first element in the image, as in
    PyTorch). With padding p a window is the part of the image it covers, its corner
    at (y*s - p, x*s - p); pieces count the offset in the whole window, padding included.

layers_avgpool2d.safetensors   AvgPool2d (floor mode; padding counted as zeros, or left out)
    NAME.x, NAME.out, NAME.out.g, NAME.x.g
        out = sum over the window's part of the image / k^2 (PyTorch's count_include_pad=True);
        x.g gets out.g / k^2 from every window it is in. With the padding left out (cases ending
        in _ex, PyTorch's count_include_pad=False, metadata " exclude_pad"), the divisor is the
        number of elements of the window's part of the image instead of k^2.
    cases: kernel 2 (stride 2, odd width), kernel 3 stride 1 (overlapping windows), and padded:
    kernel 3 stride 1 padding 1, kernel 2 stride 2 padding 1, kernel 5 stride 2 padding 2; the
    same three padded cases with the padding left out, and kernel 2 stride 2 with it left out (no
    padding: the same means).

layers_flatten.safetensors     Flatten: (n, d1, d2, ...) -> (n, d1*d2*...), x.g = out.g reshaped.

layers_batchnorm.safetensors   BatchNorm, eps 1e-5, momentum 0.1, over (n, c) or (n, c, h, w)
    NAME.x, NAME.w (c) gamma, NAME.b (c) beta, NAME.out, NAME.out.g, NAME.x.g, NAME.w.g, NAME.b.g,
    NAME.running_mean, NAME.running_var (c).
    Training (statistics over n, or over n, h, w per channel; count m):
        mean = sum(x) / m;  var = sum((x - mean)^2) / m  (biased);  xhat = (x - mean) / sqrt(var + eps)
        out = w * xhat + b
        running_mean = 0.9 * 0 + 0.1 * mean;  running_var = 0.9 * 1 + 0.1 * var * m / (m - 1)
        (the running statistics after one step from a new layer's zeros and ones; PyTorch's
        UNBIASED variance). The gradients are those of the whole map x -> out, batch statistics
        included (checked against finite differences).
    Eval (NAME.running_mean, NAME.running_var are the given statistics, unchanged by the step):
        out = w * (x - running_mean) / sqrt(running_var + eps) + b
    cases: train on (8, 5), on (3, 4, 5, 3) and on (1, 2, 3, 5); eval on (6, 5) and on (2, 3, 4, 3).

layers_activations.safetensors  elementwise, on x of shape (2, 3, 4, 2)
    NAME.x, NAME.out, NAME.out.g, NAME.x.g
        tanh:     out = tanh(x),                 x.g = out.g * (1 - out^2)
        sigmoid:  out = 1 / (1 + exp(-x)),       x.g = out.g * out * (1 - out)
        leakyrelu_0.01, leakyrelu_0.2: out = x if x > 0 else slope * x; x.g = out.g * (1 or slope)
                  (no x within 1e-3 of 0), and NAME.pieces I32: 1 where x > 0, 0 where x < 0
        gelu:     out = 0.5 x (1 + erf(x / sqrt 2)) (exact, math.erf),
                  x.g = out.g * (0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi))
        silu:     out = x sigmoid(x),            x.g = out.g * (sigmoid(x) + x sigmoid(x) (1 - sigmoid(x)))
        hardtanh, relu6: out = clip(x, min, max) with (-1, 1) and (0, 6), x.g = out.g where min < x < max,
                  else 0 (no x within 1e-3 of 0 or a bound), and NAME.pieces I32: 1 inside, 0 below, 2 above
    x ~ 3 * normal, with a few values near +-6 so that the saturated ends are covered.

Dropout has no fixture: its mask is drawn by the layer's own generator and cannot be set from
outside, so numpy cannot know it.
"""

import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ beside the fixtures (the folder is copied into the test bundle)
sys.path.insert(0, HERE)
from make_fixtures import write_safetensors  # noqa: E402  (the hand-written safetensors writer)

EPS = 1e-5
MOMENTUM = 0.1


def f32(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    return ("F32", array.shape, array.tobytes())


def i32(array):
    array = np.ascontiguousarray(array, dtype="<i4")
    return ("I32", array.shape, array.tobytes())


def as32(array):
    """The float64 copy of `array` rounded to float32: what the Swift test reads."""
    return np.asarray(array, dtype=np.float32).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Finite differences: the script's check of its own gradients.


def check_gradients(forward, inputs, gradients, out_g, name):
    """Central differences of L = sum(forward(**inputs) * out_g) against `gradients` (same keys)."""
    h = 1e-6
    for key, analytic in gradients.items():
        array = inputs[key]
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + h
            plus = np.sum(forward(**inputs) * out_g)
            array[index] = saved - h
            minus = np.sum(forward(**inputs) * out_g)
            array[index] = saved
            numeric[index] = (plus - minus) / (2 * h)
        scale = max(1.0, np.abs(analytic).max())
        error = np.abs(numeric - analytic).max() / scale
        assert error < 1e-6, f"{name}: {key}.g differs from finite differences by {error}"


# ---------------------------------------------------------------------------------------------
# Conv2d: the kernel slides over the padded image, one output position at a time.


def conv2d_forward(x, w, b, stride, padding):
    n, c_in, h, w_in = x.shape
    c_out, _, kh, kw = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (w_in + 2 * padding - kw) // stride + 1
    out = np.zeros((n, c_out, oh, ow))
    for y in range(oh):
        for x_ in range(ow):
            window = xpad[:, :, y * stride : y * stride + kh, x_ * stride : x_ * stride + kw]  # (n, cIn, kh, kw)
            out[:, :, y, x_] = np.einsum("ickl,ockl->io", window, w)
    if b is not None:
        out += b[None, :, None, None]
    return out


def conv2d_backward(x, w, out_g, stride, padding):
    """x.g, w.g, b.g: out.g scattered back through every window."""
    n, c_in, h, w_in = x.shape
    c_out, _, kh, kw = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    xpad_g = np.zeros_like(xpad)
    w_g = np.zeros_like(w)
    _, _, oh, ow = out_g.shape
    for y in range(oh):
        for x_ in range(ow):
            rows = slice(y * stride, y * stride + kh)
            columns = slice(x_ * stride, x_ * stride + kw)
            g = out_g[:, :, y, x_]  # (n, cOut)
            xpad_g[:, :, rows, columns] += np.einsum("io,ockl->ickl", g, w)
            w_g += np.einsum("io,ickl->ockl", g, xpad[:, :, rows, columns])
    x_g = xpad_g[:, :, padding : padding + h, padding : padding + w_in]
    b_g = out_g.sum(axis=(0, 2, 3))
    return x_g, w_g, b_g


def conv2d_fixture():
    # name, n, cIn, cOut, h, w, kh, kw, stride, padding, bias
    cases = [
        ("k3_s1_p1", 2, 3, 4, 7, 5, 3, 3, 1, 1, True),
        ("k3_s2_p0", 2, 1, 2, 7, 6, 3, 3, 2, 0, True),  # the last column is in no window
        ("k5_s2_p2", 1, 3, 2, 9, 7, 5, 5, 2, 2, True),
        ("k1_s1_p0", 2, 3, 5, 4, 3, 1, 1, 1, 0, True),
        ("k1_s2_p1", 1, 1, 2, 5, 4, 1, 1, 2, 1, True),  # border outputs see only padding: the bias
        ("k3_s1_p2_nobias", 1, 1, 3, 5, 5, 3, 3, 1, 2, False),
        ("k2x3_s2_p1", 2, 2, 3, 6, 7, 2, 3, 2, 1, True),
    ]
    rng = np.random.default_rng(1301)
    tensors, metadata = {}, {"written_by": "make_layer_fixtures.py"}
    for name, n, c_in, c_out, h, w_in, kh, kw, stride, padding, bias in cases:
        x = as32(rng.standard_normal((n, c_in, h, w_in)))
        w = as32(rng.standard_normal((c_out, c_in, kh, kw)) / math.sqrt(c_in * kh * kw))
        b = as32(0.5 * rng.standard_normal(c_out)) if bias else None
        out = conv2d_forward(x, w, b, stride, padding)
        out_g = as32(rng.standard_normal(out.shape))
        x_g, w_g, b_g = conv2d_backward(x, w, out_g, stride, padding)

        inputs = {"x": x.copy(), "w": w.copy()}
        gradients = {"x": x_g, "w": w_g}
        if bias:
            inputs["b"] = b.copy()
            gradients["b"] = b_g
        check_gradients(
            lambda x, w, b=None: conv2d_forward(x, w, b, stride, padding), inputs, gradients, out_g, name
        )

        tensors[f"{name}.x"] = f32(x)
        tensors[f"{name}.w"] = f32(w)
        tensors[f"{name}.out"] = f32(out)
        tensors[f"{name}.out.g"] = f32(out_g)
        tensors[f"{name}.x.g"] = f32(x_g)
        tensors[f"{name}.w.g"] = f32(w_g)
        if bias:
            tensors[f"{name}.b"] = f32(b)
            tensors[f"{name}.b.g"] = f32(b_g)
        metadata[name] = f"stride={stride} padding={padding} bias={'yes' if bias else 'no'}"
        print(f"conv2d {name}: x {list(x.shape)} w {list(w.shape)} -> out {list(out.shape)}")
    write_safetensors(os.path.join(HERE, "layers_conv2d.safetensors"), tensors, metadata)


# ---------------------------------------------------------------------------------------------
# Pooling: each window sliced out of the image and reduced; floor mode. With padding p (at most
# kernel // 2, PyTorch's rule) a window is the part of the image it covers, its corner at
# (y * s - p, x * s - p): max pooling's padding never wins (PyTorch's is -inf), average pooling's
# counts as zeros (PyTorch's count_include_pad=True: the sum of the part over kernel^2).


def windows(shape, kernel, stride, padding=0):
    """(y, x, rows, columns, top, left) of every output position of an image of `shape`
    (n, c, h, w): the rows and columns of the image the window covers, and its corner."""
    _, _, h, w_in = shape
    oh = (h + 2 * padding - kernel) // stride + 1
    ow = (w_in + 2 * padding - kernel) // stride + 1
    for y in range(oh):
        for x_ in range(ow):
            top, left = y * stride - padding, x_ * stride - padding
            rows = slice(max(top, 0), min(top + kernel, h))
            columns = slice(max(left, 0), min(left + kernel, w_in))
            yield y, x_, rows, columns, top, left


def output_shape(shape, kernel, stride, padding=0):
    n, c, h, w_in = shape
    return (n, c, (h + 2 * padding - kernel) // stride + 1, (w_in + 2 * padding - kernel) // stride + 1)


def maxpool_forward(x, kernel, stride, padding=0):
    out = np.zeros(output_shape(x.shape, kernel, stride, padding))
    for y, x_, rows, columns, _, _ in windows(x.shape, kernel, stride, padding):
        out[:, :, y, x_] = x[:, :, rows, columns].max(axis=(2, 3))
    return out


def maxpool_backward(x, out_g, kernel, stride, padding=0):
    """x.g (to each window's first maximum in the image, row-major) and the pieces (the offset
    ky * k + kx in the whole window, padding included, or -1 at a tie)."""
    n, c = x.shape[:2]
    x_g = np.zeros_like(x)
    pieces = np.zeros(out_g.shape, dtype=np.int32)
    for y, x_, rows, columns, top, left in windows(x.shape, kernel, stride, padding):
        width = columns.stop - columns.start
        for i in range(n):
            for ch in range(c):
                window = x[i, ch, rows, columns].reshape(-1)  # row-major
                first = int(np.argmax(window))  # the first maximum
                iy, ix = rows.start + first // width, columns.start + first % width
                x_g[i, ch, iy, ix] += out_g[i, ch, y, x_]
                tied = np.count_nonzero(window == window[first]) > 1
                pieces[i, ch, y, x_] = -1 if tied else (iy - top) * kernel + (ix - left)
    return x_g, pieces


def smallest_gap(x, kernel, stride, padding=0):
    """The smallest difference between the largest and second largest value of any window (inf
    for a window of one element)."""
    gap = np.inf
    for _, _, rows, columns, _, _ in windows(x.shape, kernel, stride, padding):
        if (rows.stop - rows.start) * (columns.stop - columns.start) < 2:
            continue
        values = np.sort(x[:, :, rows, columns].reshape(x.shape[0], x.shape[1], -1), axis=-1)
        gap = min(gap, (values[..., -1] - values[..., -2]).min())
    return gap


def pool_arguments(kernel, stride, padding):
    """The metadata of a pooling case: "kernel=K stride=S", then " padding=P" if padded."""
    return f"kernel={kernel} stride={stride}" + (f" padding={padding}" if padding else "")


def maxpool_fixture():
    # name, shape (n, c, h, w), kernel, stride, ties, padding
    cases = [
        ("k2_s2", (2, 3, 6, 5), 2, 2, False, 0),
        ("k3_s2", (1, 2, 7, 7), 3, 2, False, 0),
        ("ties_k2_s2", (1, 2, 4, 6), 2, 2, True, 0),
        ("ties_k3_s2", (2, 1, 5, 7), 3, 2, True, 0),
        # Padded (ResNet's stem pools 3x3 at stride 2 with padding 1); drawn after the cases above,
        # so that their inputs stay as they were.
        ("k3_s2_p1", (2, 2, 7, 6), 3, 2, False, 1),
        ("k2_s2_p1", (1, 3, 5, 4), 2, 2, False, 1),  # corner windows of one element
        ("k5_s1_p2", (1, 1, 4, 5), 5, 1, False, 2),  # windows larger than the image
        ("neg_k3_s1_p1", (1, 2, 4, 5), 3, 1, False, 1),  # all negative: a zero padding would win
        ("ties_k3_s2_p1", (2, 1, 5, 6), 3, 2, True, 1),
        ("neginf_k3_s2_p1", (2, 1, 5, 6), 3, 2, True, 1),  # a window of -inf only
    ]
    rng = np.random.default_rng(1302)
    tensors, metadata = {}, {"written_by": "make_layer_fixtures.py"}
    for name, shape, kernel, stride, ties, padding in cases:
        if ties:
            # Small integers: many windows hold their maximum twice or more.
            x = rng.integers(0, 3, shape).astype(np.float64)
            x[0, 0, 0:kernel, 0:kernel] = 2.0  # one window with every element equal (and maximal)
            if name.startswith("neginf"):
                # Distinct values, but the top left window (p rows and columns of padding) of image
                # 1 holds -inf only: its gradient goes to its first element in the image, as in
                # PyTorch (a tie, not differentiable).
                x = as32(rng.standard_normal(shape))
                x[1, 0, 0 : kernel - padding, 0 : kernel - padding] = -np.inf
        else:
            while True:
                x = as32(rng.standard_normal(shape))
                if name.startswith("neg"):
                    x = as32(-np.abs(x) - 0.5)
                if smallest_gap(x, kernel, stride, padding) >= 1e-3:
                    break
        out = maxpool_forward(x, kernel, stride, padding)
        out_g = as32(rng.standard_normal(out.shape))
        x_g, pieces = maxpool_backward(x, out_g, kernel, stride, padding)
        if ties:
            fewest = 1 if name.startswith("neginf") else 3  # the -inf window's
            assert (pieces == -1).sum() >= fewest and (pieces >= 0).sum() >= 1, f"maxpool {name}: too few ties"
        else:
            assert (pieces >= 0).all()
            check_gradients(
                lambda x: maxpool_forward(x, kernel, stride, padding), {"x": x.copy()}, {"x": x_g}, out_g, name)
        tensors[f"{name}.x"] = f32(x)
        tensors[f"{name}.out"] = f32(out)
        tensors[f"{name}.out.g"] = f32(out_g)
        tensors[f"{name}.x.g"] = f32(x_g)
        tensors[f"{name}.pieces"] = i32(pieces)
        metadata[name] = pool_arguments(kernel, stride, padding)
        print(f"maxpool2d {name}: x {list(shape)} -> out {list(out.shape)}, tied windows {(pieces == -1).sum()}")
    write_safetensors(os.path.join(HERE, "layers_maxpool2d.safetensors"), tensors, metadata)


def avgpool_divisor(kernel, rows, columns, exclude_pad):
    """k^2, or with the padding left out the number of elements of the window's part of the image."""
    if not exclude_pad:
        return kernel * kernel
    return (rows.stop - rows.start) * (columns.stop - columns.start)


def avgpool_forward(x, kernel, stride, padding=0, exclude_pad=False):
    out = np.zeros(output_shape(x.shape, kernel, stride, padding))
    for y, x_, rows, columns, _, _ in windows(x.shape, kernel, stride, padding):
        divisor = avgpool_divisor(kernel, rows, columns, exclude_pad)
        out[:, :, y, x_] = x[:, :, rows, columns].sum(axis=(2, 3)) / divisor
    return out


def avgpool_backward(x, out_g, kernel, stride, padding=0, exclude_pad=False):
    x_g = np.zeros_like(x)
    for y, x_, rows, columns, _, _ in windows(x.shape, kernel, stride, padding):
        divisor = avgpool_divisor(kernel, rows, columns, exclude_pad)
        x_g[:, :, rows, columns] += out_g[:, :, y, x_][:, :, None, None] / divisor
    return x_g


def avgpool_fixture():
    cases = [
        ("k2", (2, 3, 6, 5), 2, 2, 0),
        ("k3_s1", (1, 2, 5, 7), 3, 1, 0),
        ("k3_s1_p1", (2, 2, 5, 4), 3, 1, 1),  # the "same" size, padding counted in each mean
        ("k2_s2_p1", (1, 3, 5, 5), 2, 2, 1),
        ("k5_s2_p2", (1, 2, 6, 7), 5, 2, 2),
        # The padding left out of each mean (PyTorch's count_include_pad=False); drawn after the
        # cases above, so theirs stay as they were.
        ("k3_s1_p1_ex", (2, 2, 5, 4), 3, 1, 1),  # edge windows of 6, corners of 4 elements
        ("k2_s2_p1_ex", (1, 3, 5, 5), 2, 2, 1),  # corner windows of one element
        ("k5_s2_p2_ex", (1, 2, 6, 7), 5, 2, 2),
        ("k2_ex", (2, 3, 6, 5), 2, 2, 0),  # no padding: nothing to leave out
    ]
    rng = np.random.default_rng(1303)
    tensors, metadata = {}, {"written_by": "make_layer_fixtures.py"}
    for name, shape, kernel, stride, padding in cases:
        exclude_pad = name.endswith("_ex")
        x = as32(rng.standard_normal(shape))
        out = avgpool_forward(x, kernel, stride, padding, exclude_pad)
        out_g = as32(rng.standard_normal(out.shape))
        x_g = avgpool_backward(x, out_g, kernel, stride, padding, exclude_pad)
        check_gradients(
            lambda x: avgpool_forward(x, kernel, stride, padding, exclude_pad), {"x": x.copy()}, {"x": x_g}, out_g,
            name)
        tensors[f"{name}.x"] = f32(x)
        tensors[f"{name}.out"] = f32(out)
        tensors[f"{name}.out.g"] = f32(out_g)
        tensors[f"{name}.x.g"] = f32(x_g)
        metadata[name] = pool_arguments(kernel, stride, padding) + (" exclude_pad" if exclude_pad else "")
        print(f"avgpool2d {name}: x {list(shape)} -> out {list(out.shape)}")
    write_safetensors(os.path.join(HERE, "layers_avgpool2d.safetensors"), tensors, metadata)


# ---------------------------------------------------------------------------------------------
# Flatten


def flatten_fixture():
    cases = [("nchw", (2, 3, 4, 5)), ("ncl", (3, 2, 5)), ("n1hw", (1, 1, 3, 3))]
    rng = np.random.default_rng(1304)
    tensors, metadata = {}, {"written_by": "make_layer_fixtures.py"}
    for name, shape in cases:
        x = as32(rng.standard_normal(shape))
        out = np.array([x[i].reshape(-1) for i in range(shape[0])])  # row i: sample i, row-major
        out_g = as32(rng.standard_normal(out.shape))
        x_g = out_g.reshape(shape)
        tensors[f"{name}.x"] = f32(x)
        tensors[f"{name}.out"] = f32(out)
        tensors[f"{name}.out.g"] = f32(out_g)
        tensors[f"{name}.x.g"] = f32(x_g)
        metadata[name] = "flatten"
        print(f"flatten {name}: x {list(shape)} -> out {list(out.shape)}")
    write_safetensors(os.path.join(HERE, "layers_flatten.safetensors"), tensors, metadata)


# ---------------------------------------------------------------------------------------------
# BatchNorm


def channel_axes(x):
    """The axes the statistics run over: (0,) for (n, c), (0, 2, 3) for (n, c, h, w)."""
    return (0,) if x.ndim == 2 else (0, 2, 3)


def per_channel(v, x):
    """A (c) vector shaped to broadcast against x."""
    return v[None, :] if x.ndim == 2 else v[None, :, None, None]


def batchnorm_train_forward(x, w, b):
    axes = channel_axes(x)
    count = x.size // x.shape[1]
    mean = x.sum(axis=axes) / count
    centred = x - per_channel(mean, x)
    var = (centred**2).sum(axis=axes) / count  # biased
    xhat = centred / np.sqrt(per_channel(var, x) + EPS)
    return per_channel(w, x) * xhat + per_channel(b, x), mean, var, xhat


def batchnorm_train_backward(x, w, out_g):
    """The gradients of the whole map x -> out, batch statistics included, step by step."""
    axes = channel_axes(x)
    count = x.size // x.shape[1]
    _, mean, var, xhat = batchnorm_train_forward(x, w, np.zeros_like(w))
    std = np.sqrt(per_channel(var, x) + EPS)
    centred = x - per_channel(mean, x)
    w_g = (out_g * xhat).sum(axis=axes)
    b_g = out_g.sum(axis=axes)
    xhat_g = out_g * per_channel(w, x)
    # xhat = centred / std: through centred directly, and through std = sqrt(var + eps).
    var_g = (xhat_g * centred * -0.5 * std**-3).sum(axis=axes)
    mean_g = (-xhat_g / std).sum(axis=axes) + var_g * (-2 * centred).sum(axis=axes) / count
    x_g = xhat_g / std + per_channel(var_g, x) * 2 * centred / count + per_channel(mean_g, x) / count
    return x_g, w_g, b_g


def batchnorm_eval_forward(x, w, b, running_mean, running_var):
    xhat = (x - per_channel(running_mean, x)) / np.sqrt(per_channel(running_var, x) + EPS)
    return per_channel(w, x) * xhat + per_channel(b, x)


def batchnorm_fixture():
    # name, shape, training
    cases = [
        ("train_nc", (8, 5), True),
        ("train_nchw", (3, 4, 5, 3), True),
        ("train_nchw_n1", (1, 2, 3, 5), True),
        ("eval_nc", (6, 5), False),
        ("eval_nchw", (2, 3, 4, 3), False),
    ]
    rng = np.random.default_rng(1305)
    tensors, metadata = {}, {"written_by": "make_layer_fixtures.py"}
    for name, shape, training in cases:
        c = shape[1]
        # Per-channel offsets and scales, so that normalising does something.
        offset, scale, noise = rng.normal(1, 2, c), rng.uniform(0.5, 3, c), rng.standard_normal(shape)
        x = as32(per_channel(offset, noise) + per_channel(scale, noise) * noise)
        w = as32(1 + 0.3 * rng.standard_normal(c))
        b = as32(0.3 * rng.standard_normal(c))
        if training:
            out, mean, var, _ = batchnorm_train_forward(x, w, b)
            out_g = as32(rng.standard_normal(out.shape))
            x_g, w_g, b_g = batchnorm_train_backward(x, w, out_g)
            count = x.size // c
            running_mean = (1 - MOMENTUM) * 0 + MOMENTUM * mean
            running_var = (1 - MOMENTUM) * 1 + MOMENTUM * var * count / (count - 1)  # unbiased
            forward = lambda x, w, b: batchnorm_train_forward(x, w, b)[0]  # noqa: E731
            check_gradients(forward, {"x": x.copy(), "w": w.copy(), "b": b.copy()},
                            {"x": x_g, "w": w_g, "b": b_g}, out_g, name)
        else:
            running_mean = as32(rng.standard_normal(c))
            running_var = as32(rng.uniform(0.5, 2, c))
            out = batchnorm_eval_forward(x, w, b, running_mean, running_var)
            out_g = as32(rng.standard_normal(out.shape))
            axes = channel_axes(x)
            std = np.sqrt(per_channel(running_var, x) + EPS)
            x_g = out_g * per_channel(w, x) / std
            w_g = (out_g * (x - per_channel(running_mean, x)) / std).sum(axis=axes)
            b_g = out_g.sum(axis=axes)

            def forward(x, w, b):
                return batchnorm_eval_forward(x, w, b, running_mean, running_var)

            check_gradients(forward, {"x": x.copy(), "w": w.copy(), "b": b.copy()},
                            {"x": x_g, "w": w_g, "b": b_g}, out_g, name)
        for key, value in [("x", x), ("w", w), ("b", b), ("out", out), ("out.g", out_g), ("x.g", x_g),
                           ("w.g", w_g), ("b.g", b_g), ("running_mean", running_mean),
                           ("running_var", running_var)]:
            tensors[f"{name}.{key}"] = f32(value)
        metadata[name] = f"training={'yes' if training else 'no'} eps={EPS} momentum={MOMENTUM}"
        print(f"batchnorm {name}: x {list(shape)}")
    write_safetensors(os.path.join(HERE, "layers_batchnorm.safetensors"), tensors, metadata)


# ---------------------------------------------------------------------------------------------
# Activations


erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def gelu_derivative(x):
    return 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def leaky_relu(slope):
    return lambda x: np.where(x > 0, x, slope * x), lambda x: np.where(x > 0, 1.0, slope)


def hardtanh(low, high):
    return lambda x: np.clip(x, low, high), lambda x: np.where((x > low) & (x < high), 1.0, 0.0)


def kinks(name):
    """Where the activation `name` has a kink: no x is drawn within 1e-3 of one."""
    if name == "hardtanh":
        return [0.0, -1.0, 1.0]
    if name == "relu6":
        return [0.0, 6.0]
    return [0.0]


def activations_fixture():
    cases = [
        ("tanh", "layer=Tanh", np.tanh, lambda x: 1 - np.tanh(x) ** 2),
        ("sigmoid", "layer=Sigmoid", sigmoid, lambda x: sigmoid(x) * (1 - sigmoid(x))),
        ("leakyrelu_0.01", "layer=LeakyReLU slope=0.01", *leaky_relu(0.01)),
        ("leakyrelu_0.2", "layer=LeakyReLU slope=0.2", *leaky_relu(0.2)),
        ("gelu", "layer=GELU", gelu, gelu_derivative),
        ("silu", "layer=SiLU", lambda x: x * sigmoid(x), lambda x: sigmoid(x) + x * sigmoid(x) * (1 - sigmoid(x))),
        ("hardtanh", "layer=Hardtanh min=-1.0 max=1.0", *hardtanh(-1.0, 1.0)),
        ("relu6", "layer=Hardtanh min=0.0 max=6.0", *hardtanh(0.0, 6.0)),
    ]
    rng = np.random.default_rng(1306)
    shape = (2, 3, 4, 2)
    tensors, metadata = {}, {"written_by": "make_layer_fixtures.py"}
    for name, arguments, forward, derivative in cases:
        while True:
            x = 3 * rng.standard_normal(shape)
            x.reshape(-1)[:4] = [-6.1, -5.7, 5.9, 6.3]  # the saturated ends
            x = as32(x)
            if all(np.abs(x - kink).min() >= 1e-3 for kink in kinks(name)):
                break
        out = forward(x)
        out_g = as32(rng.standard_normal(shape))
        x_g = out_g * derivative(x)
        check_gradients(lambda x: forward(x), {"x": x.copy()}, {"x": x_g}, out_g, name)
        tensors[f"{name}.x"] = f32(x)
        tensors[f"{name}.out"] = f32(out)
        tensors[f"{name}.out.g"] = f32(out_g)
        tensors[f"{name}.x.g"] = f32(x_g)
        if name.startswith("leakyrelu"):
            tensors[f"{name}.pieces"] = i32(np.where(x > 0, 1, 0))
        if name in ("hardtanh", "relu6"):
            low, high = (-1.0, 1.0) if name == "hardtanh" else (0.0, 6.0)
            tensors[f"{name}.pieces"] = i32(np.where(x < low, 0, np.where(x > high, 2, 1)))
        metadata[name] = arguments
        print(f"activation {name}: x {list(shape)}")
    write_safetensors(os.path.join(HERE, "layers_activations.safetensors"), tensors, metadata)


def main():
    conv2d_fixture()
    maxpool_fixture()
    avgpool_fixture()
    flatten_fixture()
    batchnorm_fixture()
    activations_fixture()


if __name__ == "__main__":
    main()
