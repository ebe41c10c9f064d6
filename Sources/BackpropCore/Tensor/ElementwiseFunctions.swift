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
