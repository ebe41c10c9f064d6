import Foundation

/// A seeded random number generator that gives the same numbers on every machine.
///
/// The algorithm is xoshiro256** (Blackman and Vigna, 2018), its state filled from the seed by
/// SplitMix64, as its authors recommend. Both use only 64-bit integer arithmetic, so the stream
/// does not depend on the platform. Normal samples come from the Box–Muller transform computed in
/// Double and rounded to Float.
public struct RandomGenerator: RandomNumberGenerator, Sendable {
    // (Visible to the inlined `next()`: other modules draw in their own loops, a dropout mask two
    // elements a draw, where a call per draw took most of the time.)
    @usableFromInline var state: (UInt64, UInt64, UInt64, UInt64)
    /// The second normal sample of the last Box–Muller pair, not yet returned.
    private var spareNormal: Double?

    /// Creates a generator whose stream is determined by `seed`.
    public init(seed: UInt64) {
        var splitMix = seed
        func nextSplitMix() -> UInt64 {
            splitMix &+= 0x9E37_79B9_7F4A_7C15
            var z = splitMix
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (nextSplitMix(), nextSplitMix(), nextSplitMix(), nextSplitMix())
    }

    /// The next 64 random bits (xoshiro256**).
    @inlinable public mutating func next() -> UInt64 {
        let result = rotateLeft(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotateLeft(state.3, 45)
        return result
    }

    /// A uniform Double in `[0, 1)`, from the top 53 bits of `next()`.
    public mutating func nextUniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A sample of the standard normal distribution (mean 0, standard deviation 1).
    ///
    /// Box–Muller: with `u1` in `(0, 1]` and `u2` in `[0, 1)`, `r = sqrt(-2 log u1)` and the pair
    /// `(r cos 2πu2, r sin 2πu2)` are two independent normal samples.
    public mutating func nextNormal() -> Double {
        if let spare = spareNormal {
            spareNormal = nil
            return spare
        }
        let u1 = 1 - nextUniform()
        let u2 = nextUniform()
        let radius = (-2 * Foundation.log(u1)).squareRoot()
        let angle = 2 * Double.pi * u2
        spareNormal = radius * Foundation.sin(angle)
        return radius * Foundation.cos(angle)
    }

    /// A uniform integer in `0..<upperBound`, without modulo bias (Lemire's method).
    /// - Precondition: `upperBound > 0`.
    public mutating func nextIndex(below upperBound: Int) -> Int {
        precondition(upperBound > 0, "nextIndex(below:): upper bound \(upperBound) must be positive")
        let bound = UInt64(upperBound)
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = next().multipliedFullWidth(by: bound) }
        }
        return Int(product.high)
    }

    /// A random permutation of `0..<count` (Fisher–Yates), the same on every machine for the same
    /// generator state.
    public mutating func permutation(_ count: Int) -> [Int] {
        var result = Array(0..<count)
        if count < 2 { return result }
        for i in stride(from: count - 1, to: 0, by: -1) {
            result.swapAt(i, nextIndex(below: i + 1))
        }
        return result
    }

    @inlinable func rotateLeft(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

extension RandomGenerator {
    /// The seed of the default generator when the process starts: 0. (PyTorch seeds its default
    /// generator from the clock; here a program that never seeds is still reproducible.)
    public static let defaultSeed: UInt64 = 0

    /// The process-wide default generator, behind a lock.
    private static let shared = Locked(RandomGenerator(seed: defaultSeed))

    /// Runs `body` with the process-wide default generator, which `Tensor.randn(_:)` and
    /// `Tensor.rand(_:)` draw from, and returns what it returns.
    ///
    /// The generator starts at ``defaultSeed``; `Tensor.manualSeed(_:)` reseeds it. It is
    /// thread-safe: `body` holds a lock for its whole run, so what it draws is one unbroken part
    /// of the stream. `body` must not call back into the default generator (the lock is not
    /// reentrant: that would deadlock).
    public static func withDefault<R>(_ body: (inout RandomGenerator) -> R) -> R {
        shared.withLock { generator in body(&generator) }
    }
}
