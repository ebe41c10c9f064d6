import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropNetwork

// The vector kernels of Sigmoid, SiLU, Tanh and GELU (`ActivationKernels`, Sources/CKernels/Activations.c)
// against the C library's `exp`, `tanh`, `erf` and `erfc` in Double, rounded to Float: within one ulp everywhere
// (saturated ends, subnormals, infinities and NaN included); and every path (AVX-512, AVX2, scalar)
// the same bits at every offset and length, and through the layers on several threads.

@Suite("Activation kernels: within an ulp of the C library in Double, the same bits on every path")
struct ActivationKernelTests {
    /// The distance in units in the last place between two Floats (0 for two NaNs; `.max` for a
    /// NaN against a number). Floats are ordered by their bits once the sign is folded in.
    static func ulps(_ a: Float, _ b: Float) -> UInt32 {
        if a.isNaN || b.isNaN { return a.isNaN && b.isNaN ? 0 : .max }
        func ordered(_ x: Float) -> Int64 {
            let bits = Int64(x.bitPattern & 0x7FFF_FFFF)
            return x.sign == .minus ? -bits : bits
        }
        return UInt32(clamping: abs(ordered(a) - ordered(b)))
    }

    /// Inputs over every range that matters: a grid of uniform ones from -120 to 120 (past the
    /// saturation of each function, and past Float's underflow of sigmoid near -88 and -103),
    /// small ones down to the subnormals (tanh's `x` below 2⁻²⁰, its cancellation above), and the
    /// special values.
    static func inputs() -> [Float] {
        var generator = RandomGenerator(seed: 1207)
        var values: [Float] = [
            0, -0.0, .leastNonzeroMagnitude, -.leastNonzeroMagnitude, .leastNormalMagnitude, 1e-30, -1e-20,
            0x1p-20, -0x1p-20, 0x1.fffffep-21, 0x1.000002p-20, 1, -1, 9.01, -9.01, 16.6, 36.7, -87.3, -88.7, -103.3,
            -104, 88.8, .greatestFiniteMagnitude, -.greatestFiniteMagnitude, .infinity, -.infinity, .nan,
        ]
        for _ in 0..<60_000 { values.append(Float(generator.nextUniform() * 240 - 120)) }
        for _ in 0..<60_000 { values.append(Float(generator.nextUniform() * 12 - 6)) }
        for _ in 0..<40_000 {
            // |x| = 2^u with u uniform in [-140, 0]: every binade from the subnormals to 1.
            let magnitude = Float(Foundation.pow(2.0, -140 * generator.nextUniform()))
            values.append(generator.nextUniform() < 0.5 ? magnitude : -magnitude)
        }
        return values
    }

    /// The reference in Double from the C library: `1 / (1 + exp(-x))`, `x / (1 + exp(-x))`,
    /// `tanh(x)`, SiLU's gradient `g · s · (1 + x · (1 - s))`, ``geluReference(_:)`` and GELU's
    /// gradient `g · (erfc(-x/√2)/2 + x · exp(-x²/2)/√(2π))`, each rounded once to Float.
    static func reference(_ kind: ActivationKernels.Kind, _ x: Float, _ g: Float) -> Float {
        let x = Double(x)
        let s = x >= 0 ? 1 / (1 + Foundation.exp(-x)) : Foundation.exp(x) / (1 + Foundation.exp(x))
        switch kind {
        case .sigmoid: return Float(s)
        case .silu: return x.isInfinite ? Float(x < 0 ? .nan : x) : Float(x * s)
        case .siluBackward: return Float(Double(g) * s * (1 + x * (1 - s)))
        case .tanh: return Float(Foundation.tanh(x))
        case .gelu: return geluReference(Float(x))
        case .geluBackward:
            let cdf = Foundation.erfc(-x / 2.0.squareRoot()) / 2
            return Float(Double(g) * (cdf + x * Foundation.exp(-x * x / 2) / (2 * Double.pi).squareRoot()))
        }
    }

    /// gelu(x) = x Φ(x) in Double, rounded once: `x · erfc(-x/√2) / 2` for |x| ≥ 1; below,
    /// `x/2 + x · erf(x/√2) / 2`, whose second term is never negative and, for tiny x, below
    /// Double's ulp of the first: where it is lost the sum is taken one Double up, on the side of
    /// x/2 the true value lies (a subnormal x with an odd last bit makes x/2 a halfway case).
    static func geluReference(_ input: Float) -> Float {
        let x = Double(input)
        if !(Swift.abs(x) < 1) { return Float(x * Foundation.erfc(-x / 2.0.squareRoot()) / 2) }
        let half = x / 2
        let rest = x * Foundation.erf(x / 2.0.squareRoot()) / 2
        let sum = half + rest
        return Float(sum == half && rest > 0 ? sum.nextUp : sum)
    }

    static func run(
        _ kind: ActivationKernels.Kind, _ x: [Float], _ g: [Float]? = nil, vectors: Bool = true
    ) -> [Float] {
        var out = [Float](repeating: -7, count: x.count)
        x.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { out in
                if let g {
                    g.withUnsafeBufferPointer { g in
                        ActivationKernels.apply(
                            kind, x.baseAddress!, g.baseAddress!, into: out.baseAddress!, count: x.count,
                            vectors: vectors)
                    }
                } else {
                    ActivationKernels.apply(
                        kind, x.baseAddress!, into: out.baseAddress!, count: x.count, vectors: vectors)
                }
            }
        }
        return out
    }

    @Test(
        "sigmoid, silu, tanh and gelu: within one ulp of the C library's Double formula rounded, nearly all equal",
        arguments: [ActivationKernels.Kind.sigmoid, .silu, .tanh, .gelu])
    func withinAnUlp(_ kind: ActivationKernels.Kind) {
        let x = Self.inputs()
        let out = Self.run(kind, x)
        var worst: (ulps: UInt32, x: Float) = (0, 0)
        var differing = 0
        for (x, got) in zip(x, out) {
            let distance = Self.ulps(got, Self.reference(kind, x, 0))
            if distance > worst.ulps { worst = (distance, x) }
            if distance != 0 { differing += 1 }
        }
        #expect(worst.ulps <= 1, "\(kind)(\(worst.x)) is \(worst.ulps) ulps from the reference")
        // Double's error is far below Float's half ulp: only a rare halfway case may round the other way.
        #expect(differing <= x.count / 10_000, "\(kind): \(differing) of \(x.count) differ")
    }

    /// The factor of `g` in a backward kind's formula, in Double: SiLU's `1 + x(1 - σ(x))` (which
    /// multiplies `σ(x)`), GELU's `Φ(x) + xφ(x)`.
    static func backwardFactor(_ kind: ActivationKernels.Kind, _ x: Float) -> Double {
        let t = Double(x)
        if kind == .siluBackward { return 1 + t * (1 - 1 / (1 + Foundation.exp(-t))) }
        return Foundation.erfc(-t / 2.0.squareRoot()) / 2 + t * Foundation.exp(-t * t / 2)
            / (2 * Double.pi).squareRoot()
    }

    @Test(
        "SiLU's and GELU's backward: the Double formula rounded, within one ulp but where their factor cancels",
        arguments: [ActivationKernels.Kind.siluBackward, .geluBackward])
    func backwardWithinAnUlp(_ kind: ActivationKernels.Kind) {
        var generator = RandomGenerator(seed: 12)
        let x = Self.inputs()
        let g = x.map { _ in Float(generator.nextUniform() * 4 - 2) }
        let out = Self.run(kind, x, g)
        for i in x.indices {
            let expected = Self.reference(kind, x[i], g[i])
            let factor = Self.backwardFactor(kind, x[i])
            if Swift.abs(factor) > 1e-6 || !factor.isFinite {
                #expect(Self.ulps(out[i], expected) <= 1, "\(kind)(\(x[i])) · \(g[i]): \(out[i]), expected \(expected)")
            } else {  // near the factor's zero (SiLU's -1.2785, GELU's -0.7518): Double's rounding, absolute
                #expect(Swift.abs(Double(out[i]) - Double(expected)) <= 1e-13, "\(kind)(\(x[i])) · \(g[i])")
            }
        }
    }

    @Test("GELU's tiny inputs: x/2 rounded toward the true side when it is a Float halfway case, ±0 kept")
    func geluTinyInputs() {
        // 3·2⁻¹⁴⁹ / 2 = 1.5·2⁻¹⁴⁹ lies halfway between 2⁻¹⁴⁹ and 2·2⁻¹⁴⁹; gelu(x) = x/2 + x²/√(2π) + …
        // is a little above x/2 (toward +∞) for either sign: 2·2⁻¹⁴⁹ for x > 0, -2⁻¹⁴⁹ for x < 0.
        let x: [Float] = [
            Float(bitPattern: 3), -Float(bitPattern: 3), Float(bitPattern: 5), -Float(bitPattern: 5), 0, -0.0,
            .leastNormalMagnitude, 0x1p-41,
        ]
        let expected: [Float] = [
            Float(bitPattern: 2), -Float(bitPattern: 1), Float(bitPattern: 3), -Float(bitPattern: 2), 0, -0.0,
            .leastNormalMagnitude / 2, 0x1p-42,
        ]
        for vectors in [false, true] {
            let out = Self.run(.gelu, x, vectors: vectors)
            #expect(out.map(\.bitPattern) == expected.map(\.bitPattern), "vectors \(vectors): \(out)")
        }
    }

    @Test("the limits: sigmoid 0 and 1, silu x and 0 (NaN at -inf, as PyTorch), tanh ±1, NaN to NaN, -0 kept by tanh")
    func limits() {
        let x: [Float] = [.infinity, -.infinity, 200, -200, .nan, -0.0]
        #expect(Self.run(.sigmoid, x).prefix(4) == [1, 0, 1, 0])
        let silu = Self.run(.silu, x)
        #expect(silu[0] == .infinity && silu[1].isNaN && silu[2] == 200 && silu[3] == -0.0)
        let tanh = Self.run(.tanh, x)
        #expect(tanh.prefix(4) == [1, -1, 1, -1] && tanh[5].sign == .minus && tanh[5] == 0)
        for kind in [ActivationKernels.Kind.sigmoid, .silu, .tanh] { #expect(Self.run(kind, x)[4].isNaN) }
        // SiLU's gradient at ±inf: ∞ · 0, NaN, as PyTorch's; the saturated ends: 1 and 0 (times g).
        let gradient = Self.run(.siluBackward, x, [Float](repeating: 2, count: x.count))
        #expect(gradient[0].isNaN && gradient[1].isNaN && gradient[2] == 2 && gradient[3] == 0)
        // GELU as PyTorch's: gelu(inf) = inf, gelu(-inf) = -inf · 0 = NaN, and its gradient NaN at both.
        let gelu = Self.run(.gelu, x)
        #expect(gelu[0] == .infinity && gelu[1].isNaN && gelu[2] == 200 && gelu[3] == 0 && gelu[4].isNaN)
        let geluGradient = Self.run(.geluBackward, x, [Float](repeating: 2, count: x.count))
        #expect(geluGradient[0].isNaN && geluGradient[1].isNaN && geluGradient[2] == 2 && geluGradient[3] == 0)
        #expect(geluGradient[4].isNaN && geluGradient[5] == 1)
    }

    @Test(
        "every path gives the scalar path's bits, for every length 1 to 33 and every start offset 0 to 7",
        arguments: [ActivationKernels.Kind.sigmoid, .silu, .siluBackward, .tanh, .gelu, .geluBackward])
    func pathsAgree(_ kind: ActivationKernels.Kind) {
        var generator = RandomGenerator(seed: 33)
        let x = (0..<48).map { _ in Float(generator.nextNormal() * 8) }
        let g = (0..<48).map { _ in Float(generator.nextNormal()) }
        for offset in 0..<8 {
            for count in 1...33 {
                let xs = Array(x[offset..<(offset + count)])
                let gs = kind.needsGradient ? Array(g[offset..<(offset + count)]) : nil
                let scalar = Self.run(kind, xs, gs, vectors: false)
                for avx512 in [true, false] {
                    let vector = KernelInstructions.withAVX512(allowed: avx512) { Self.run(kind, xs, gs) }
                    #expect(
                        vector.map(\.bitPattern) == scalar.map(\.bitPattern),
                        "\(kind), offset \(offset), count \(count), AVX-512 allowed \(avx512)")
                }
            }
        }
    }

    @Test("the layers, in pieces over threads: out, and SiLU's and GELU's inp.g, are the scalar path's bits")
    func layersOnThreads() {
        var generator = RandomGenerator(seed: 5)
        let shape = [130, 1001]  // 130,130 elements: 3 pieces of at least 32 Ki, ends not on a vector
        let x = uniform(shape, in: -10...10, generator: &generator)
        let g = uniform(shape, in: -1...1, generator: &generator)
        let cases: [(ActivationKernels.Kind, any Layer)] = [
            (.sigmoid, Sigmoid()), (.silu, SiLU()), (.tanh, Tanh()), (.gelu, GELU()),
        ]
        for (kind, layer) in cases {
            let out = layer(x)
            #expect(out.values == Self.run(kind, x.values, vectors: false), "\(kind)")
            let backwardKind: ActivationKernels.Kind? =
                layer is SiLU ? .siluBackward : layer is GELU ? .geluBackward : nil
            if let backwardKind {
                out.g = g
                layer.backward()
                #expect(x.g.values == Self.run(backwardKind, x.values, g.values, vectors: false), "\(backwardKind)")
            }
        }
    }
}
