import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// The seeded generator against an independent Python implementation of xoshiro256**, SplitMix64
/// and Box–Muller (`Fixtures/make_random.py`, whose output these numbers are).
@Suite("Seeded random numbers")
struct RandomTests {
    @Test func bitsMatchThePublishedAlgorithm() {
        var generator = RandomGenerator(seed: 42)
        let expected: [UInt64] = [
            1_546_998_764_402_558_742, 6_990_951_692_964_543_102, 12_544_586_762_248_559_009,
            17_057_574_109_182_124_193,
        ]
        #expect((0..<4).map { _ in generator.next() } == expected)
    }

    @Test func normalsMatchBoxMuller() {
        var generator = RandomGenerator(seed: 7)
        let expected = [
            -0.2790239910251981, 1.5277231859624536, 1.8997685786889567, -0.2266957459968598, 2.136306014732201,
            -2.1969177074215507,
        ]
        let actual = (0..<6).map { _ in generator.nextNormal() }
        for (a, e) in zip(actual, expected) { #expect(abs(a - e) < 1e-15) }
        // randn rounds the same stream to Float, row-major.
        var again = RandomGenerator(seed: 7)
        #expect(Tensor.randn([2, 3], generator: &again).values == expected.map { Float($0) })
    }

    @Test func permutationsAreSeededAndComplete() {
        var a = RandomGenerator(seed: 3)
        var b = RandomGenerator(seed: 3)
        let p = a.permutation(1000)
        #expect(p == b.permutation(1000))
        #expect(p.sorted() == Array(0..<1000))
        #expect(p != Array(0..<1000))
    }

    @Test func randnHasUnitVarianceAndZeroMean() {
        var generator = RandomGenerator(seed: 11)
        let sample = Tensor.randn([100_000], generator: &generator)
        let mean = sample.sumInDouble() / 100_000
        let variance = (sample * sample).sumInDouble() / 100_000 - mean * mean
        // Standard errors: 0.003 for the mean, 0.0045 for the variance.
        #expect(abs(mean) < 0.015)
        #expect(abs(variance - 1) < 0.025)
    }
}
