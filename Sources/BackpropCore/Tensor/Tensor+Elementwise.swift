import Foundation

precedencegroup ExponentiationPrecedence {
    higherThan: MultiplicationPrecedence
    associativity: right
}

/// Raises every element to a power: the seed's `**` (`(output - target) ** 2`).
infix operator ** : ExponentiationPrecedence

// Elementwise arithmetic with NumPy broadcasting, as in PyTorch. Every operation returns a new
// tensor, and records itself for autograd when an operand requires gradients (see `Graph.swift`;
// the derivatives are in `Derivatives.swift`).

extension Tensor {
    /// Elementwise sum, with broadcasting: `a + b`.
    /// - Precondition: the shapes broadcast; otherwise stops naming both.
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        broadcastBinary(a, b, name: "+", Arithmetic.Add()).recorded(.add, a, b)
    }

    /// Elementwise difference, with broadcasting: `a - b`.
    /// - Precondition: the shapes broadcast; otherwise stops naming both.
    public static func - (a: Tensor, b: Tensor) -> Tensor {
        broadcastBinary(a, b, name: "-", Arithmetic.Subtract()).recorded(.subtract, a, b)
    }

    /// Elementwise product, with broadcasting: `a * b`.
    /// - Precondition: the shapes broadcast; otherwise stops naming both.
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        broadcastBinary(a, b, name: "*", Arithmetic.Multiply()).recorded(.multiply, a, b)
    }

    /// Elementwise quotient, with broadcasting: `a / b`.
    /// - Precondition: the shapes broadcast; otherwise stops naming both.
    public static func / (a: Tensor, b: Tensor) -> Tensor {
        broadcastBinary(a, b, name: "/", Arithmetic.Divide()).recorded(.divide, a, b)
    }

    /// Adds a number to every element: `a + s`.
    public static func + (a: Tensor, s: Float) -> Tensor {
        a.mapValues(Arithmetic.AddScalar(s: s)).recorded(.addScalar, a)
    }

    /// Adds a number to every element: `s + a`.
    public static func + (s: Float, a: Tensor) -> Tensor { a + s }

    /// Subtracts a number from every element: `a - s`.
    public static func - (a: Tensor, s: Float) -> Tensor {
        a.mapValues(Arithmetic.SubtractScalar(s: s)).recorded(.addScalar, a)
    }

    /// Subtracts every element from a number: `s - a`.
    public static func - (s: Float, a: Tensor) -> Tensor {
        a.mapValues(Arithmetic.SubtractFromScalar(s: s)).recorded(.reverseSubtractScalar, a)
    }

    /// Multiplies every element by a number: `a * s`.
    public static func * (a: Tensor, s: Float) -> Tensor {
        a.mapValues(Arithmetic.MultiplyByScalar(s: s)).recorded(.multiplyScalar(s), a)
    }

    /// Multiplies every element by a number: `s * a`.
    public static func * (s: Float, a: Tensor) -> Tensor { a * s }

    /// Divides every element by a number: `a / s` (a true division, as NumPy's, not a product
    /// with `1 / s`).
    public static func / (a: Tensor, s: Float) -> Tensor {
        a.mapValues(Arithmetic.DivideByScalar(s: s)).recorded(.divideScalar(s), a)
    }

    /// Divides a number by every element: `s / a`.
    public static func / (s: Float, a: Tensor) -> Tensor {
        a.mapValues(Arithmetic.DivideScalar(s: s)).recorded(.reverseDivideScalar(s), a)
    }

    /// Negates every element: `-a`.
    public static prefix func - (a: Tensor) -> Tensor {
        a.mapValues(Arithmetic.Negate()).recorded(.multiplyScalar(-1), a)
    }

    /// Raises every element to the power `p`: `a ** p` (the seed's `**2`).
    ///
    /// `** 2` is computed as `x * x`, exactly as NumPy and PyTorch square; `** 0.5` as `sqrt(x)` and
    /// `** -0.5` as `1 / sqrt(x)`, as PyTorch computes them (C's `pow` gives `(-inf) ** 0.5 = inf`
    /// and `(-0) ** 0.5 = +0`, where the square root gives NaN and -0). The derivative
    /// `p · x ** (p - 1)` goes through the same rules, so `sqrt`'s is NaN at -inf and -inf at -0.
    public static func ** (a: Tensor, p: Float) -> Tensor {
        let result: Tensor
        if p == 2 {
            result = a.mapValues(Arithmetic.Square())
        } else if p == 1 {
            result = a.mapValues(Arithmetic.Identity())
        } else if p == 0.5 {
            result = a.mapValues(Arithmetic.SquareRoot())
        } else if p == -0.5 {
            result = a.mapValues(Arithmetic.ReciprocalSquareRoot())
        } else {
            result = a.mapValues { Foundation.pow($0, p) }
        }
        return result.recorded(.power(p), a)
    }

    /// Every element squared: `a ** 2`.
    public func squared() -> Tensor { self ** 2 }

    /// Every element clamped from below: `max(x, minimum)` (PyTorch's `clamp_min`).
    ///
    /// The seed's ReLU is `inp.clamp_min(0.)`.
    /// NOTE: autograd passes the gradient where `x > minimum` and blocks it where `x == minimum`,
    /// as the seed's hand-written `(inp > 0).float() * out.g` does.
    public func clampMin(_ minimum: Float) -> Tensor {
        // The loop written out rather than through `mapValues`: a closure passed down two levels
        // is called per element (about 1.5 ns each); this one is vectorised.
        let source = contiguous()
        let result = Tensor(uninitializedShape: shape)
        let (input, out) = (source.pointer, result.pointer)
        withExtendedLifetime(source) {
            Parallel.forEachRange(count, minimumPerPiece: Tensor.elementwiseMinimumPerWorker) { range in
                // Not Swift.max(x, m), which gives m where they compare equal: -0.0 stays -0.0 and
                // NaN stays NaN, as in PyTorch's clamp_min (one maxps either way).
                for i in range { out[i] = input[i] < minimum ? minimum : input[i] }
            }
        }
        return result.recorded(.clampMin(minimum), self)
    }

    /// `e` raised to every element.
    public func exp() -> Tensor {
        mapValues { Foundation.exp($0) }.recorded(.exp, self)
    }

    /// The natural logarithm of every element.
    public func log() -> Tensor {
        mapValues { Foundation.log($0) }.recorded(.log, self)
    }

    /// The square root of every element (NaN below 0, -0 at -0; `x ** 0.5`, whose derivative
    /// `0.5 / sqrt(x)` autograd takes).
    public func sqrt() -> Tensor {
        mapValues(Arithmetic.SquareRoot()).recorded(.power(0.5), self)
    }

    /// A mask: 1 where the element is greater than `s`, else 0 (the seed's `(inp > 0).float()`).
    ///
    /// The mask is a constant to autograd: comparisons have no derivative.
    public static func > (a: Tensor, s: Float) -> Tensor {
        a.mapValues(Arithmetic.Greater(s: s))
    }

    /// A mask: 1 where the element is less than `s`, else 0.
    public static func < (a: Tensor, s: Float) -> Tensor {
        a.mapValues(Arithmetic.Less(s: s))
    }

    /// The tensor itself: masks are already `Float`. Kept so that the seed's
    /// `(inp > 0).float()` reads the same in Swift.
    public func float() -> Tensor { self }
}
