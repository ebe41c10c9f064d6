/// A function of one element that the elementwise loops (`Tensor.mapValues`, the layers'
/// `mapElements`) apply to every element of a tensor.
///
/// A type, not a closure: a closure reaches the loop that the thread pool runs as a value, and is
/// called for every element (2-3 ns each, and no vector instructions); a type's `callAsFunction`
/// is specialised into that loop, which the compiler then vectorises (about 0.2 ns an element for
/// a product). ``ClosureFunction`` wraps a closure for the paths where speed does not matter.
package protocol ElementwiseFunction {
    /// The value for one element `x`.
    func callAsFunction(_ x: Float) -> Float
}

/// A function of two elements (of two tensors of one shape, or broadcast together) that the
/// elementwise loops apply at every position; a type for the reason ``ElementwiseFunction`` gives.
package protocol ElementwiseBinaryFunction {
    /// The value for the elements `a` and `b` at one position.
    func callAsFunction(_ a: Float, _ b: Float) -> Float
}

/// A closure as an ``ElementwiseFunction``: called for every element, not specialised.
package struct ClosureFunction: ElementwiseFunction {
    let body: (Float) -> Float
    package init(_ body: @escaping (Float) -> Float) { self.body = body }
    package func callAsFunction(_ x: Float) -> Float { body(x) }
}

/// A closure as an ``ElementwiseBinaryFunction``: called for every element, not specialised.
package struct ClosureBinaryFunction: ElementwiseBinaryFunction {
    let body: (Float, Float) -> Float
    package init(_ body: @escaping (Float, Float) -> Float) { self.body = body }
    package func callAsFunction(_ a: Float, _ b: Float) -> Float { body(a, b) }
}

/// The arithmetic of the tensor operators, one type for each, for the elementwise loops.
enum Arithmetic {
    /// `a + b`.
    struct Add: ElementwiseBinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a + b } }
    /// `a - b`.
    struct Subtract: ElementwiseBinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a - b } }
    /// `a * b`.
    struct Multiply: ElementwiseBinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a * b } }
    /// `a / b`.
    struct Divide: ElementwiseBinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { a / b } }
    /// `b`: a copy of the second operand, broadcast to the shape of both.
    struct Second: ElementwiseBinaryFunction { func callAsFunction(_ a: Float, _ b: Float) -> Float { b } }

    /// `x + s`.
    struct AddScalar: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { x + s }
    }
    /// `x - s`.
    struct SubtractScalar: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { x - s }
    }
    /// `s - x`.
    struct SubtractFromScalar: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { s - x }
    }
    /// `x * s`.
    struct MultiplyByScalar: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { x * s }
    }
    /// `x / s`.
    struct DivideByScalar: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { x / s }
    }
    /// `s / x`.
    struct DivideScalar: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { s / x }
    }
    /// `-x`.
    struct Negate: ElementwiseFunction { func callAsFunction(_ x: Float) -> Float { -x } }
    /// `x * x`.
    struct Square: ElementwiseFunction { func callAsFunction(_ x: Float) -> Float { x * x } }
    /// `x`: a contiguous copy.
    struct Identity: ElementwiseFunction { func callAsFunction(_ x: Float) -> Float { x } }
    /// `√x`.
    struct SquareRoot: ElementwiseFunction { func callAsFunction(_ x: Float) -> Float { x.squareRoot() } }
    /// `1 / √x`.
    struct ReciprocalSquareRoot: ElementwiseFunction {
        func callAsFunction(_ x: Float) -> Float { 1 / x.squareRoot() }
    }
    /// `|x|`.
    struct Magnitude: ElementwiseFunction { func callAsFunction(_ x: Float) -> Float { Swift.abs(x) } }
    /// `sign(x)`: 1, -1, or 0 at ±0 (and at NaN).
    struct Sign: ElementwiseFunction {
        func callAsFunction(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) }
    }
    /// `x` clamped to `[low, high]` (`Tensor.clamp(min:max:)`): `x` where it lies within the bounds,
    /// -0.0 included (PyTorch's clamp keeps it, where `Swift.max(-0.0, 0)` gives 0); then the upper
    /// bound, which wins where `low > high`. NaN stays NaN.
    struct Clamp: ElementwiseFunction {
        let low: Float
        let high: Float
        func callAsFunction(_ x: Float) -> Float {
            let lifted = x < low ? low : x
            return lifted > high ? high : lifted
        }
    }
    /// 1 where `low < x < high`, else 0, a bound that is `nil` passing everything on its side
    /// (±inf included): the clamp's derivative.
    struct StrictlyInside: ElementwiseFunction {
        let low: Float
        let high: Float
        let hasLow: Bool
        let hasHigh: Bool
        init(low: Float?, high: Float?) {
            (self.low, self.hasLow) = (low ?? 0, low != nil)
            (self.high, self.hasHigh) = (high ?? 0, high != nil)
        }
        func callAsFunction(_ x: Float) -> Float { (!hasLow || x > low) && (!hasHigh || x < high) ? 1 : 0 }
    }
    /// `x > s ? 1 : 0`.
    struct Greater: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { x > s ? 1 : 0 }
    }
    /// `x < s ? 1 : 0`.
    struct Less: ElementwiseFunction {
        let s: Float
        func callAsFunction(_ x: Float) -> Float { x < s ? 1 : 0 }
    }
}
