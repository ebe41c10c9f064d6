// Every derivative autograd knows, in one table: for an operation `y = f(inputs)` and the
// gradient `g = ∂loss/∂y`, the gradients `∂loss/∂input` (vector–Jacobian products).
// The forwards are in `Tensor/`; each case names the function that computed it.

/// The operations autograd records, with what their derivatives need saved.
enum Op: CustomStringConvertible {
    case add, subtract, multiply, divide  // a ∘ b, broadcasting (Tensor+Elementwise.swift)
    case addScalar  // x + s, x - s
    case reverseSubtractScalar  // s - x
    case multiplyScalar(Float)  // x * s, -x
    case divideScalar(Float)  // x / s
    case reverseDivideScalar(Float)  // s / x
    case power(Float)  // x ** p, sqrt(x)
    case clampMin(Float)  // max(x, m)
    case exp, log
    case erf  // the error function (Tensor+Special.swift)
    case tanh, sigmoid, abs, sin, cos  // (Tensor+Math.swift)
    case clamp(Float?, Float?)  // min(max(x, lower), upper), a nil bound absent (Tensor+Math.swift)
    case reshape, transpose  // views (Tensor+Shape.swift); reshape also for contiguous()
    case permute([Int])  // a view with the dimensions reordered (Tensor+Permute.swift)
    case unfold(kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int))  // im2col (Tensor+Convolution.swift)
    case fold(kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int))  // col2im, unfold's adjoint
    case matmul  // a • b (MatMul.swift)
    case batchedMatmul  // a • b of batches of matrices, broadcast (MatMul+Batched.swift)
    case rows(start: Int)  // x[start..<start + n], a view (Tensor+Rows.swift)
    case gatherRows([Int])  // x[indices], a copy
    case cat(axis: Int)  // inputs joined along `axis` (Tensor+Joining.swift; stack is unsqueeze and cat)
    case sum(axis: Int, keepDim: Bool)  // (Tensor+Reduction.swift)
    case sumAll
    case mean(axis: Int, keepDim: Bool)
    case meanAll
    case max(axis: Int, keepDim: Bool)
    case min(axis: Int, keepDim: Bool)
    case maxAll, minAll
    case logSumExp(axis: Int, keepDim: Bool)
    case custom(any DifferentiableOperation)  // a user's operation (CustomOperation.swift)

    var description: String {
        switch self {
        case .add: "+"
        case .subtract: "-"
        case .multiply: "*"
        case .divide: "/"
        case .addScalar: "+ s"
        case .reverseSubtractScalar: "s -"
        case .multiplyScalar(let s): "* \(s)"
        case .divideScalar(let s): "/ \(s)"
        case .reverseDivideScalar(let s): "\(s) /"
        case .power(let p): "** \(p)"
        case .clampMin(let m): "clampMin(\(m))"
        case .exp: "exp"
        case .log: "log"
        case .erf: "erf"
        case .tanh: "tanh"
        case .sigmoid: "sigmoid"
        case .abs: "abs"
        case .sin: "sin"
        case .cos: "cos"
        case .clamp(let lower, let upper): "clamp(\(lower.map { "\($0)" } ?? "-"), \(upper.map { "\($0)" } ?? "-"))"
        case .reshape: "reshape"
        case .transpose: "t"
        case .permute(let dims): "permute(\(dims))"
        case .unfold(let k, let s, let p): "unfold(\(k.0)×\(k.1), stride \(s.0)×\(s.1), padding \(p.0)×\(p.1))"
        case .fold(let k, let s, let p): "fold(\(k.0)×\(k.1), stride \(s.0)×\(s.1), padding \(p.0)×\(p.1))"
        case .matmul, .batchedMatmul: "•"
        case .rows(let start): "rows(\(start)...)"
        case .gatherRows(let indices): "rows([\(indices.count) indices])"
        case .cat(let axis): "cat(dim: \(axis))"
        case .sum(let axis, _): "sum(\(axis))"
        case .sumAll: "sum"
        case .mean(let axis, _): "mean(\(axis))"
        case .meanAll: "mean"
        case .max(let axis, _): "max(\(axis))"
        case .min(let axis, _): "min(\(axis))"
        case .maxAll: "max"
        case .minAll: "min"
        case .logSumExp(let axis, _): "logSumExp(\(axis))"
        case .custom(let operation): operation.name
        }
    }

    /// The gradient with respect to each input, given the output `y` and its gradient `g`.
    /// `nil` where an input has no gradient. Runs with recording off.
    func inputGradients(output y: Tensor, gradient g: Tensor, inputs: [Tensor]) -> [Tensor?] {
        let x = inputs[0]
        switch self {
        case .add:  // ∂(a + b) = g, g
            return [g.unbroadcast(to: x.shape), g.unbroadcast(to: inputs[1].shape)]
        case .subtract:  // ∂(a - b) = g, -g
            return [g.unbroadcast(to: x.shape), (-g).unbroadcast(to: inputs[1].shape)]
        case .multiply:  // ∂(a * b) = g * b, g * a
            let b = inputs[1]
            return [(g * b).unbroadcast(to: x.shape), (g * x).unbroadcast(to: b.shape)]
        case .divide:  // ∂(a / b) = g / b, -g * (a / b) / b (not a / b², which leaves Float's range first)
            let b = inputs[1]
            return [(g / b).unbroadcast(to: x.shape), (-g * y / b).unbroadcast(to: b.shape)]
        case .addScalar:  // ∂(x + s) = g
            return [g]
        case .reverseSubtractScalar:  // ∂(s - x) = -g
            return [-g]
        case .multiplyScalar(let s):  // ∂(x * s) = g * s
            return [g * s]
        case .divideScalar(let s):  // ∂(x / s) = g / s
            return [g / s]
        case .reverseDivideScalar(let s):  // ∂(s / x) = -g * s / x²
            return [-g * s / (x * x)]
        case .power(let p):  // ∂(x ** p) = g * p * x ** (p - 1)
            if p == 2 { return [g * x * 2] }
            if p == 1 { return [g] }
            if p == 0 { return [g * 0] }  // x ** 0 is 1 everywhere; 0 * x ** -1 would be NaN at 0
            return [g * p * (x ** (p - 1))]
        case .clampMin(let m):  // ∂ max(x, m) = g where x > m, else 0
            return [g * (x > m)]
        case .exp:  // ∂ eˣ = g * eˣ
            return [g * y]
        case .log:  // ∂ log x = g / x
            return [g / x]
        case .erf:  // ∂ erf x = g * 2/√π * e^(-x²)
            return [g * (-(x * x)).exp() * Float(2 / Double.pi.squareRoot())]
        case .tanh:  // ∂ tanh x = g * (1 - tanh² x)
            return [g * (1 - y * y)]
        case .sigmoid:  // ∂ σ(x) = g * σ(x) (1 - σ(x))
            return [g * y * (1 - y)]
        case .abs:  // ∂ |x| = g * sign(x), 0 at x = 0 (PyTorch's choice)
            return [g * x.mapValues(Arithmetic.Sign())]
        case .sin:  // ∂ sin x = g * cos x
            return [g * x.cos()]
        case .cos:  // ∂ cos x = -g * sin x
            return [-g * x.sin()]
        case .clamp(let lower, let upper):  // g strictly inside the bounds given, else 0 (PyTorch's choice)
            let inside = x.mapValues(Arithmetic.StrictlyInside(low: lower, high: upper))
            return [g * inside]
        case .reshape:  // the same values, back in the input's shape
            return [g.reshape(x.shape)]
        case .transpose:  // ∂ xᵀ = gᵀ
            return [g.t()]
        case .permute(let dims):  // g, its dimensions put back by the inverse permutation
            return [g.permute(Tensor.inversePermutation(dims))]
        case .unfold(let kernel, let stride, let padding):  // ∂ unfold = fold (its adjoint)
            return [g.fold(imageShape: x.shape, kernel: kernel, stride: stride, padding: padding)]
        case .fold(let kernel, let stride, let padding):  // ∂ fold = unfold (its adjoint)
            return [g.unfold(kernel: kernel, stride: stride, padding: padding)]
        case .matmul:  // ∂(a • b) = g • bᵀ, aᵀ • g
            let b = inputs[1]
            return [g • b.t(), x.t() • g]
        case .batchedMatmul:  // the same per matrix, summed over the batch dimensions broadcast
            let b = inputs[1]
            return [
                Tensor.batchedMatmul(g, b.transposedMatrices(), kernel: .fast).unbroadcast(to: x.shape),
                Tensor.batchedMatmul(x.transposedMatrices(), g, kernel: .fast).unbroadcast(to: b.shape),
            ]
        case .rows(let start):  // g goes back to the rows it came from, 0 elsewhere
            let gradient = Tensor.zeros(x.shape)
            let gradientOut = g.contiguous()
            let rowSize = x.shape.dropFirst().reduce(1, *)
            withExtendedLifetime(gradientOut) {
                (gradient.pointer + start * rowSize).update(from: gradientOut.pointer, count: gradientOut.count)
            }
            return [gradient]
        case .gatherRows(let indices):  // each row of g is added into the row it was taken from
            let gradient = Tensor.zeros(x.shape)
            let gradientOut = g.contiguous()
            let rowSize = x.shape.dropFirst().reduce(1, *)
            withExtendedLifetime(gradientOut) {
                for (row, index) in indices.enumerated() {
                    let to = gradient.pointer + index * rowSize
                    let from = gradientOut.pointer + row * rowSize
                    for j in 0..<rowSize { to[j] += from[j] }
                }
            }
            return [gradient]
        case .cat(let axis):  // each input gets its slice of g along the axis
            var start = 0
            return inputs.map { input in
                defer { start += input.shape[axis] }
                return g.narrowedView(axis: axis, start: start, length: input.shape[axis])
            }
        case .sum(let axis, let keepDim):  // every summed element gets g
            return [(keepDim ? g : g.unsqueeze(axis)).expanded(to: x.shape)]
        case .sumAll:
            return [g.expanded(to: x.shape)]
        case .mean(let axis, let keepDim):  // every element gets g / size
            return [(keepDim ? g : g.unsqueeze(axis)).expanded(to: x.shape) / Float(x.shape[axis])]
        case .meanAll:
            return [g.expanded(to: x.shape) / Float(x.count)]
        case .max(let axis, _):  // g goes to the first maximum along the axis, 0 elsewhere
            return [g.scattered(along: axis, to: x.argmax(axis), shape: x.shape)]
        case .min(let axis, _):  // g goes to the first minimum along the axis, 0 elsewhere
            return [g.scattered(along: axis, to: x.argmin(axis), shape: x.shape)]
        case .maxAll, .minAll:  // g shared evenly among the elements equal to the result (PyTorch's rule)
            let extreme = y.item()
            let ties = x.mapValues { extreme.isNaN ? ($0.isNaN ? 1 : 0) : ($0 == extreme ? 1 : 0) }
            return [ties * (g / ties.sum().item())]
        case .logSumExp(let axis, let keepDim):  // ∂ log Σ eˣ = g * softmax(x)
            let yKept = keepDim ? y : y.unsqueeze(axis)
            let gKept = keepDim ? g : g.unsqueeze(axis)
            return [(x - yKept).exp() * gKept]
        case .custom(let operation):  // the user's derivative, its gradients checked against the inputs
            return Tensor.checkedGradients(of: operation, gradient: g, inputs: inputs, output: y)
        }
    }
}

extension Tensor {
    /// This gradient summed back to `shape`: undoes broadcasting, so that a bias `(m)` added to
    /// every row of an `(n, m)` result gets the sum of the rows' gradients.
    func unbroadcast(to target: [Int]) -> Tensor {
        if shape == target { return self }
        var result = self
        // Sum away the leading dimensions that broadcasting added.
        while result.rank > target.count { result = result.sum(0) }
        // Sum, keeping the dimension, where the target had size 1.
        for axis in 0..<target.count where target[axis] == 1 && result.shape[axis] != 1 {
            result = result.sum(axis, keepDim: true)
        }
        return result.reshape(target)
    }

    /// A gradient with one value per line along `axis` (keepDim or not), placed at position
    /// `winners[line]` of each line of a zero tensor of `shape`: the derivative of a reduction that
    /// selects one element per line (`max(dim)`, `min(dim)`).
    func scattered(along axis: Int, to winners: [Int], shape target: [Int]) -> Tensor {
        let gradient = Tensor.zeros(target)
        let (outer, size, inner) = gradient.splitAround(axis)
        let gradientOut = contiguous()
        withExtendedLifetime(gradientOut) {
            for o in 0..<outer {
                for i in 0..<inner {
                    let k = winners[o * inner + i]
                    gradient.pointer[(o * size + k) * inner + i] = gradientOut.pointer[o * inner + i]
                }
            }
        }
        return gradient
    }

    /// Positions `start..<start + length` along `axis`, as a view that autograd does not record
    /// (for derivatives, which run with recording off).
    func narrowedView(axis: Int, start: Int, length: Int) -> Tensor {
        var newShape = shape
        newShape[axis] = length
        return Tensor(storage: storage, shape: newShape, strides: strides, offset: offset + start * strides[axis])
    }

    /// This tensor broadcast to `target` and copied into a new contiguous tensor (each element
    /// repeated along the dimensions that broadcasting adds or stretches).
    /// - Precondition: this shape broadcasts to `target` (not the other way round).
    func expanded(to target: [Int]) -> Tensor {
        precondition(
            Broadcasting.shape(shape, target, operation: "expand") == target,
            "expand: shape \(shape) cannot be expanded to \(target)")
        // A view of one zero, read with stride 0 along every dimension, gives the shape without
        // allocating a tensor of zeros.
        let zero = Tensor(storage: Storage(count: 1), shape: target, strides: Array(repeating: 0, count: target.count))
        zero.storage.pointer.pointee = 0
        return Tensor.broadcastBinary(zero, self, name: "expand", Arithmetic.Second())
    }
}
