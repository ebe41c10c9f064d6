import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

@Suite("near: the lesson's test_near, with a report")
struct NearTests {
    @Test("equal tensors are near, with no error")
    func equal() {
        let a = Tensor([[1, -2], [3, 4]])
        let report = near(a, a.copy())
        #expect(report.isNear)
        #expect(report.mismatches == 0)
        #expect(report.maxAbsoluteError == 0)
        #expect(report.count == 4)
    }

    @Test("the tolerance is absoluteTolerance + relativeTolerance × |expected|, boundary included")
    func toleranceBoundary() {
        // Values exactly representable, so that the boundary is exact: 0.5 + 0.25 × 8 = 2.5.
        let expected = Tensor([8, -8])
        #expect(near(Tensor([10.5, -8]), expected, relativeTolerance: 0.25, absoluteTolerance: 0.5).isNear)
        #expect(!near(Tensor([10.5625, -8]), expected, relativeTolerance: 0.25, absoluteTolerance: 0.5).isNear)
        // Relative to the reference (the second argument), as torch.allclose: against 10.5625,
        // 0.5 + 0.25 × 10.5625 = 3.140625 allows the same difference.
        #expect(near(Tensor([8, -8]), Tensor([10.5625, -8]), relativeTolerance: 0.25, absoluteTolerance: 0.5).isNear)
    }

    @Test("the report names the worst element: its index, both values and the error")
    func worstElement() throws {
        let expected = Tensor([[1, 2, 3], [4, 5, 6]])
        let actual = Tensor([[1, 2.01, 3], [4, 5, 6.5]])
        let report = near(actual, expected)
        #expect(!report.isNear)
        #expect(report.mismatches == 2)
        let worst = try #require(report.worst)
        #expect(worst.index == [1, 2])
        #expect(worst.actual == 6.5 && worst.expected == 6)
        #expect(worst.absoluteError == 0.5)
        #expect(report.maxAbsoluteError == 0.5)
        #expect(report.description.contains("2 of 6"))
        #expect(report.description.contains("[1, 2]"))
        #expect(report.description.contains("6.5"))
    }

    @Test("different shapes are never near, and the report names both")
    func shapes() {
        let report = near(Tensor([1, 2, 3]), Tensor([[1, 2, 3]]))
        #expect(!report.isNear)
        #expect(report.description.contains("[3]") && report.description.contains("[1, 3]"))
    }

    @Test("NaN is never near, not even NaN; equal infinities are")
    func specialValues() {
        #expect(!near(Tensor([1, .nan]), Tensor([1, 2])).isNear)
        #expect(!near(Tensor([.nan]), Tensor([.nan])).isNear)
        #expect(near(Tensor([.infinity, -.infinity]), Tensor([.infinity, -.infinity])).isNear)
        #expect(!near(Tensor([.infinity]), Tensor([-.infinity])).isNear)
        let report = near(Tensor([1, .nan, 3]), Tensor([1, 2, 100]))
        #expect(report.worst?.index == [1])
    }

    @Test("views compare by their values, whatever their layout")
    func views() {
        let a = Tensor([[1, 2], [3, 4]])
        #expect(near(a.t(), Tensor([[1, 3], [2, 4]]), relativeTolerance: 0, absoluteTolerance: 0).isNear)
    }
}

@Suite("Central finite differences")
struct FiniteDifferenceTests {
    @Test("the step is ε^(1/3) · max(1, |x|), ε the Float machine epsilon")
    func step() {
        let base = Foundation.cbrt(Double(Float.ulpOfOne))  // 2⁻²³ ^ (1/3) ≈ 4.92e-3
        #expect(abs(Double(finiteDifferenceStep(at: 0.25)) - base) < 1e-9)
        #expect(abs(Double(finiteDifferenceStep(at: -1)) - base) < 1e-9)
        #expect(abs(Double(finiteDifferenceStep(at: -40)) - 40 * base) < 1e-7)
    }

    @Test("exact for a quadratic, up to the rounding of the loss")
    func quadratic() {
        // loss = Σ c_i x_i² + x_0 x_1, in Double; ∂loss/∂x_i = 2 c_i x_i (+ the cross term).
        let x = Tensor([0.5, -1.25, 3, 100])
        let c: [Double] = [1, -2, 0.5, 0.01]
        let loss = {
            let v = x.values.map(Double.init)
            return zip(c, v).map { $0 * $1 * $1 }.reduce(0, +) + v[0] * v[1]
        }
        let estimates = finiteDifferences(of: loss, withRespectTo: x)
        let v = x.values.map(Double.init)
        let exact = [2 * c[0] * v[0] + v[1], 2 * c[1] * v[1] + v[0], 2 * c[2] * v[2], 2 * c[3] * v[3]]
        for (estimate, truth) in zip(estimates, exact) {
            #expect(abs(estimate - truth) <= 1e-9 * max(1, abs(truth)), "\(estimate) against \(truth)")
        }
    }

    @Test("one-sided differences are exact for a quadratic too, and see only their own side")
    func oneSided() {
        // loss = relu(x)² + 3x: a kink at 0. At x = 0.002, within the step of the kink, only the
        // forward difference stays on the quadratic side: 2x + 3 = 3.004.
        let x = Tensor([0.002])
        let loss = {
            let v = Double(x.values[0])
            return max(v, 0) * max(v, 0) + 3 * v
        }
        let forward = finiteDifference(of: loss, withRespectTo: x, at: 0, scheme: .forward)
        let backward = finiteDifference(of: loss, withRespectTo: x, at: 0, scheme: .backward)
        let central = finiteDifference(of: loss, withRespectTo: x, at: 0)
        let truth = 2 * Double(x.values[0]) + 3
        #expect(abs(forward - truth) < 1e-9, "\(forward) against \(truth)")
        #expect(abs(backward - truth) > 1e-3)
        #expect(abs(central - truth) > 1e-6)
        // Away from the kink all three agree with the derivative.
        let y = Tensor([-1.5])
        let quadratic = {
            let v = Double(y.values[0])
            return 0.5 * v * v - v
        }
        for scheme in FiniteDifferenceScheme.allCases {
            let estimate = finiteDifference(of: quadratic, withRespectTo: y, at: 0, scheme: scheme)
            #expect(abs(estimate - (-2.5)) < 1e-9, "\(scheme): \(estimate)")
        }
    }

    @Test("within the documented bound δ/h + M h²/6 for a cubic evaluated in Float")
    func cubicInFloat() {
        let x = Tensor([0.7, -1.3, 2.1])
        // loss = Σ x³ in Float: each cube and the sum rounded, δ <= 4 ε Σ|x³|; M = ∂³x³ = 6.
        let loss = { Double((x ** 3).sum().item()) }
        let estimates = finiteDifferences(of: loss, withRespectTo: x)
        let v = x.values.map(Double.init)
        let magnitude = v.map { abs($0 * $0 * $0) }.reduce(0, +)
        for (i, estimate) in estimates.enumerated() {
            let h = Double(finiteDifferenceStep(at: x.values[i]))
            let delta = 4 * Double(Float.ulpOfOne) * magnitude
            let bound = delta / h + 6 * h * h / 6
            let truth = 3 * v[i] * v[i]
            #expect(abs(estimate - truth) <= bound, "element \(i): \(estimate) against \(truth), bound \(bound)")
        }
    }

    @Test("the element is restored bit for bit, and nothing is recorded")
    func restoresElement() {
        let x = Tensor([0.1, 1e-8, -3.7])
        x.requiresGrad = true
        let before = x.values.map(\.bitPattern)
        var sawGraph = false
        _ = finiteDifferences(
            of: {
                let y = (x * x).sum()
                if y.gradFn != nil { sawGraph = true }
                return Double(y.item())
            }, withRespectTo: x)
        #expect(x.values.map(\.bitPattern) == before)
        #expect(!sawGraph)
        #expect(x.grad == nil)
    }

    @Test("coordinates: all of a small tensor, a seeded sample of distinct ones of a large one")
    func coordinates() {
        var generator = RandomGenerator(seed: 5)
        #expect(finiteDifferenceCoordinates(count: 7, samples: 7, generator: &generator) == Array(0..<7))
        #expect(finiteDifferenceCoordinates(count: 3, samples: 10, generator: &generator) == [0, 1, 2])
        var first = RandomGenerator(seed: 42)
        var again = RandomGenerator(seed: 42)
        var other = RandomGenerator(seed: 43)
        let sample = finiteDifferenceCoordinates(count: 50_176, samples: 64, generator: &first)
        #expect(sample.count == 64)
        #expect(Set(sample).count == 64)
        #expect(sample.allSatisfy { (0..<50_176).contains($0) })
        #expect(sample == sample.sorted())
        #expect(sample == finiteDifferenceCoordinates(count: 50_176, samples: 64, generator: &again))
        #expect(sample != finiteDifferenceCoordinates(count: 50_176, samples: 64, generator: &other))
        // Every position can be drawn: a sample of all but one misses exactly one.
        let almostAll = finiteDifferenceCoordinates(count: 100, samples: 99, generator: &first)
        #expect(Set(almostAll).count == 99)
    }
}
