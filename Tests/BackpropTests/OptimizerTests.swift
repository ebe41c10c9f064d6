import Foundation
import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Each optimizer's update against steps computed by hand (the arithmetic is written out in the
/// comments), and the learning-rate schedules against their formulas at known points.
@Suite("Optimizers and schedules")
struct OptimizerTests {
    /// A weight matrix `(2, 1)` and a bias `(1)` with the given values and gradients.
    static func parameters(w: [Float], wg: [Float], b: Float, bg: Float) -> (Tensor, Tensor) {
        let weight = Tensor(shape: [2, 1], values: w)
        weight.g = Tensor(shape: [2, 1], values: wg)
        let bias = Tensor([b])
        bias.g = Tensor([bg])
        return (weight, bias)
    }

    @Test func sgdStepsAgainstTheGradient() {
        let (w, b) = Self.parameters(w: [1, 2], wg: [0.5, -1], b: 3, bg: 2)
        SGD([w, b], learningRate: 0.1).step()
        // w - 0.1 g: 1 - 0.05, 2 + 0.1; b: 3 - 0.2.
        expectAllNear(w.values, [0.95, 2.1], tolerance: 1e-7)
        expectAllNear(b.values, [2.8], tolerance: 1e-7)
    }

    @Test func weightDecayShrinksMatricesButNotBiases() {
        let (w, b) = Self.parameters(w: [1, 2], wg: [0.5, -1], b: 3, bg: 2)
        SGD([w, b], learningRate: 0.1, weightDecay: 0.5).step()
        // w (1 - 0.1·0.5) - 0.1 g: 0.95 - 0.05 = 0.9, 1.9 + 0.1 = 2.0; b as without decay.
        expectAllNear(w.values, [0.9, 2.0], tolerance: 1e-7)
        expectAllNear(b.values, [2.8], tolerance: 1e-7)
    }

    @Test func momentumAccumulatesVelocity() {
        let (w, b) = Self.parameters(w: [1, 2], wg: [0.5, -1], b: 3, bg: 2)
        let optimizer = SGD([w, b], learningRate: 0.1, momentum: 0.9)
        optimizer.step()
        // Step 1: v = g = (0.5, -1); w = (0.95, 2.1).
        expectAllNear(w.values, [0.95, 2.1], tolerance: 1e-7)
        w.g = Tensor(shape: [2, 1], values: [1, 1])
        b.g = Tensor([0])
        optimizer.step()
        // Step 2: v = 0.9 (0.5, -1) + (1, 1) = (1.45, 0.1); w = (0.95 - 0.145, 2.1 - 0.01).
        expectAllNear(w.values, [0.805, 2.09], tolerance: 1e-6)
        // b: v = 0.9 · 2 + 0 = 1.8; b = 2.8 - 0.18.
        expectAllNear(b.values, [2.62], tolerance: 1e-6)
        expectAllNear(optimizer.state["0.velocity"]!.values, [1.45, 0.1], tolerance: 1e-6)
    }

    @Test func adamFirstStepMovesEachWeightByTheLearningRate() {
        let (w, b) = Self.parameters(w: [1, 2], wg: [0.5, -1e-3], b: 3, bg: 2)
        Adam([w, b], learningRate: 0.1).step()
        // t = 1: m̂ = g, v̂ = g², so the step is lr · g / (|g| + ε): 0.1 · 0.5 / 0.50000001 and
        // 0.1 · 1e-3 / (1e-3 + 1e-8) = 0.0999990.
        expectAllNear(w.values, [0.9, 2.099999], tolerance: 2e-7)
        expectAllNear(b.values, [2.9], tolerance: 1e-6)
    }

    @Test func adamSecondStepUsesBiasCorrectedMoments() {
        let (w, b) = Self.parameters(w: [1, 1], wg: [0.5, 0.5], b: 0, bg: 0)
        let optimizer = Adam([w, b], learningRate: 0.1)
        optimizer.step()
        w.g = Tensor(shape: [2, 1], values: [-1, 0.5])
        optimizer.step()
        // Weight 0 after step 1: 0.9. Step 2 with g = -1:
        //   m = 0.9·0.05 + 0.1·(-1) = -0.055,    m̂ = -0.055 / (1 - 0.9²) = -0.289473684
        //   v = 0.999·0.00025 + 0.001·1 = 0.00124975,  v̂ = v / (1 - 0.999²) = 0.625187594
        //   w = 0.9 - 0.1 · (-0.289473684) / (0.790688051 + 1e-8) = 0.936610...
        // Weight 1, g = 0.5 again: m̂ = 0.5, v̂ = 0.25, w = 0.9 - 0.1 = 0.8.
        expectAllNear(w.values, [0.9366104, 0.8], tolerance: 2e-6)
        #expect(optimizer.stepCount == 2)
        // Weight 1: m = 0.9·0.05 + 0.1·0.5 = 0.095, v = 0.999·0.00025 + 0.001·0.25 = 0.00049975.
        expectAllNear(optimizer.state["0.m"]!.values, [-0.055, 0.095], tolerance: 1e-7)
        expectAllNear(optimizer.state["0.v"]!.values, [0.00124975, 0.00049975], tolerance: 1e-9)
    }

    @Test func adamWeightDecayIsDecoupled() {
        let (w, b) = Self.parameters(w: [1, 2], wg: [0.5, -0.5], b: 3, bg: 2)
        Adam([w, b], learningRate: 0.1, weightDecay: 0.1).step()
        // w (1 - 0.01) ∓ 0.1: 0.99 - 0.1, 1.98 + 0.1. Decay added to the gradient instead would
        // have been divided away by Adam's normalisation. Biases are not decayed.
        expectAllNear(w.values, [0.89, 2.08], tolerance: 1e-6)
        expectAllNear(b.values, [2.9], tolerance: 1e-6)
    }

    @Test func adamVectorisedLanesMatchTheScalarFormula() {
        // 21 values: two lanes of eight and a scalar remainder of five, against Double.
        var generator = RandomGenerator(seed: 9)
        let w = Tensor.randn([21], generator: &generator)
        let start = w.values.map(Double.init)
        let gradients = (0..<3).map { _ in Tensor.randn([21], generator: &generator) }
        let optimizer = Adam([w], learningRate: 0.01)
        for gradient in gradients {
            w.g = gradient
            optimizer.step()
        }
        var expected = start
        var m = [Double](repeating: 0, count: 21)
        var v = m
        for (t, gradient) in gradients.enumerated() {
            let g = gradient.values.map(Double.init)
            for i in 0..<21 {
                m[i] = 0.9 * m[i] + 0.1 * g[i]
                v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i]
                let mHat = m[i] / (1 - pow(0.9, Double(t + 1)))
                let vHat = v[i] / (1 - pow(0.999, Double(t + 1)))
                expected[i] -= 0.01 * mHat / (vHat.squareRoot() + 1e-8)
            }
        }
        expectAllNear(w.values, expected, tolerance: 1e-6)
    }

    @Test func zeroGradForgetsEveryGradient() {
        let (w, b) = Self.parameters(w: [1, 2], wg: [0.5, -1], b: 3, bg: 2)
        w.grad = Tensor(shape: [2, 1], values: [1, 1])
        let optimizer = OptimizerKind.adam.make(parameters: [w, b], learningRate: 0.1, weightDecay: 0)
        optimizer.zeroGrad()
        #expect(w.g == nil && b.g == nil && w.grad == nil)
    }

    /// PyTorch's loop, `loss.backward(); optimizer.step(); optimizer.zero_grad()`, with autograd's
    /// `.grad` and no `.g`: the loss `Σ w·c + 2 b` has the gradients `c` and 2, exactly.
    @Test func stepsTakeAutogradsGradientWhereThereIsNoG() {
        let w = Tensor(shape: [2, 1], values: [1, 2])
        let b = Tensor([3])
        for parameter in [w, b] { parameter.requiresGrad = true }
        let c = Tensor(shape: [2, 1], values: [0.5, -1])
        let optimizer = SGD([w, b], learningRate: 0.1)
        for step in 1...2 {
            ((w * c).sum() + (b * 2).sum()).backward()
            optimizer.step()
            optimizer.zeroGrad()
            // w - 0.1 c per step: (1 - 0.05 k, 2 + 0.1 k); b - 0.2 per step.
            let k = Double(step)
            expectAllNear(w.values, [1 - 0.05 * k, 2 + 0.1 * k], tolerance: 1e-6)
            expectAllNear(b.values, [3 - 0.2 * k], tolerance: 1e-6)
            #expect(w.grad == nil && b.grad == nil)
        }
        // Adam's first step from `.grad` moves each weight by the learning rate, as from `.g`.
        ((w * c).sum()).backward()
        let before = w.values.map(Double.init)
        Adam([w], learningRate: 0.1).step()
        expectAllNear(w.values, [before[0] - 0.1, before[1] + 0.1], tolerance: 1e-6)
    }

    @Test(arguments: OptimizerKind.allCases)
    func savedStateResumesTheSameSteps(kind: OptimizerKind) throws {
        func run(steps: Int, resumeAfter: Int?) throws -> [Float] {
            var generator = RandomGenerator(seed: 4)
            let w = Tensor.randn([3, 2], generator: &generator)
            var optimizer = kind.make(parameters: [w], learningRate: 0.05, weightDecay: 0.01)
            for step in 0..<steps {
                if step == resumeAfter {
                    let saved = optimizer.state.mapValues { $0.copy() }
                    optimizer = kind.make(parameters: [w], learningRate: 0.05, weightDecay: 0.01)
                    try optimizer.loadState(saved)
                }
                w.g = Tensor.randn([3, 2], generator: &generator)
                optimizer.step()
            }
            return w.values
        }
        #expect(try run(steps: 4, resumeAfter: 2) == run(steps: 4, resumeAfter: nil))
    }

    @Test func loadingStateOfTheWrongShapeNamesTheTensor() {
        let optimizer = Adam([Tensor.zeros(3, 2)], learningRate: 0.1)
        let state: [String: Tensor] = ["step": Tensor(1), "0.m": Tensor.zeros(2, 3), "0.v": Tensor.zeros(3, 2)]
        #expect {
            try optimizer.loadState(state)
        } throws: { error in
            "\(error)" == "optimizer state: tensor \"0.m\" has shape [2, 3], expected [3, 2]"
        }
    }

    /// A negative second moment (a damaged checkpoint) made the next step's square root NaN, which
    /// `train --resume` then reported as a diverging run ("try a lower learning rate").
    @Test func aNegativeSecondMomentIsRefusedAsDamage() {
        let optimizer = Adam([Tensor.zeros(3, 2)], learningRate: 0.1)
        let v = Tensor(shape: [3, 2], values: [0, 1, 2, -0.5, 4, 5])
        let state: [String: Tensor] = ["step": Tensor(3), "0.m": Tensor.zeros(3, 2), "0.v": v]
        #expect {
            try optimizer.loadState(state)
        } throws: { error in
            "\(error)" == "optimizer state: tensor \"0.v\" holds -0.5 at element 3; expected Adam's second moments, "
                + "averages of squares, which are never negative"
        }
    }

    /// A step count that is whole but past Int's range (3e38, 1e19 in a damaged checkpoint)
    /// trapped in `Int(_:)`; it is refused as the negative and fractional ones are.
    @Test(arguments: [Float(3e38), 1e19, 9.3e18, -1, 2.5, .nan, .infinity])
    func aStepCountNoIntHoldsIsRefused(step: Float) {
        let optimizer = Adam([Tensor.zeros(3, 2)], learningRate: 0.1)
        let state: [String: Tensor] = ["step": Tensor(step), "0.m": Tensor.zeros(3, 2), "0.v": Tensor.zeros(3, 2)]
        #expect {
            try optimizer.loadState(state)
        } throws: { error in
            "\(error)".hasPrefix("Adam state: missing or invalid \"step\" (expected a whole number of steps taken")
                && "\(error)".hasSuffix("found \(step))")
        }
        // The largest whole Float below 2^63 is a step count an Int holds.
        let largest = Float(Int.max).nextDown
        try? optimizer.loadState(state.merging(["step": Tensor(largest)]) { $1 })
        #expect(optimizer.state["step"]?.item() == largest)
    }

    @Test func oneCycleRisesThenFalls() {
        let s = LearningRateSchedule.oneCycle
        // Starts at lr / 25, peaks at lr after 25% of the steps, ends near lr / (25 · 10⁵).
        #expect(abs(s.learningRate(peak: 1, step: 0, totalSteps: 100) - 0.04) < 1e-7)
        #expect(abs(s.learningRate(peak: 1, step: 25, totalSteps: 100) - 1) < 1e-7)
        // Halfway down the cosine (62.5% of the steps): the mean of lr and the floor.
        #expect(abs(s.learningRate(peak: 1, step: 625, totalSteps: 1000) - (1 + 4e-7) / 2) < 1e-7)
        #expect(s.learningRate(peak: 1, step: 999, totalSteps: 1000) < 1e-4)
        // fastai's formula (callback/schedule.py: sched_cos(start, end, pos) = start + (1 +
        // cos(π(1 - pos)))(end - start)/2, combined_cos(0.25, lr/25, lr, END)) with this END,
        // lr/(25·10⁵), in Python (fastai's own END, lr/10⁵, gives 0.2500075, 0.0109360904 and
        // 0.000448580565 at these steps: see the NOTE on `oneCycle`).
        for (step, total, fastai) in [(3, 4, 0.2500003), (19, 20, 0.0109265953), (99, 100, 0.000438984775)] {
            let lr = Double(s.learningRate(peak: 1, step: step, totalSteps: total))
            #expect(abs(lr - fastai) <= 1e-6 * fastai, "step \(step) of \(total): \(lr), fastai \(fastai)")
        }
    }

    @Test func cosineWarmsUpThenDecaysToZero() {
        let s = LearningRateSchedule.cosine
        // Warm-up over 5% of 1000 steps: step 0 gets 1/50 of lr, step 49 all of it.
        #expect(abs(s.learningRate(peak: 1, step: 0, totalSteps: 1000) - 0.02) < 1e-7)
        #expect(abs(s.learningRate(peak: 1, step: 49, totalSteps: 1000) - 1) < 1e-7)
        // Half-way through the decay (step 525): lr / 2.
        #expect(abs(s.learningRate(peak: 1, step: 525, totalSteps: 1000) - 0.5) < 1e-6)
        #expect(LearningRateSchedule.constant.learningRate(peak: 0.3, step: 7, totalSteps: 10) == 0.3)
    }
}

/// Adam's one-pass kernel (Optimizers.c, sixteen lanes at a time with AVX-512, eight with AVX2:
/// both paths where the machine has AVX-512) computes, bit for bit, the scalar loop written from
/// the formulas, every operation rounded as written: for every length up to 21, 47 and a long one
/// (so every tail and every start inside a vector), with gradients and moments over many
/// magnitudes, zeros included, decayed and not.
@Test(arguments: Array(0...21) + [47, 1000])
func adamKernelIsTheFormulasElementByElement(count: Int) {
    var generator = RandomGenerator(seed: UInt64(100 + count))
    func values(scale: Float) -> [Float] {
        (0..<count).map { _ in
            let magnitude = Float(Foundation.pow(10, Double(generator.nextUniform() * 8 - 6)))
            return generator.nextUniform() < 0.1 ? 0 : (generator.nextUniform() < 0.5 ? -1 : 1) * magnitude * scale
        }
    }
    let (w0, g, m0) = (values(scale: 1), values(scale: 1), values(scale: 0.1))
    let v0 = values(scale: 0.01).map { $0 * $0 }
    for (decay, t) in [(Float(1), 1.0), (Float(1 - 3e-3 * 0.1), 37.0)] {
        let (beta1, beta2, lr, epsilon): (Double, Double, Float, Float) = (0.9, 0.999, 3e-3, 1e-8)
        let step = OptimizerKernels.AdamStep(
            beta1: Float(beta1), beta2: Float(beta2), oneMinusBeta1: Float(1 - beta1), oneMinusBeta2: Float(1 - beta2),
            decay: decay, stepSize: Float(Double(lr) / (1 - Foundation.pow(beta1, t))),
            inverseCorrection2: Float(1 / (1 - Foundation.pow(beta2, t)).squareRoot()), epsilon: epsilon)
        var (expectedW, expectedM, expectedV) = (w0, m0, v0)
        for i in 0..<count {
            expectedM[i] = step.beta1 * expectedM[i] + step.oneMinusBeta1 * g[i]
            expectedV[i] = step.beta2 * expectedV[i] + step.oneMinusBeta2 * (g[i] * g[i])
            let denominator = expectedV[i].squareRoot() * step.inverseCorrection2 + step.epsilon
            expectedW[i] = expectedW[i] * step.decay - step.stepSize * (expectedM[i] / denominator)
        }
        for avx512 in Tensor.SkinnyInstructionSet.avx512.isAvailable ? [true, false] : [false] {
            var (w, m, v) = (w0, m0, v0)
            KernelInstructions.withAVX512(allowed: avx512) {
                w.withUnsafeMutableBufferPointer { w in
                    m.withUnsafeMutableBufferPointer { m in
                        v.withUnsafeMutableBufferPointer { v in
                            g.withUnsafeBufferPointer { g in
                                if count > 0 {
                                    OptimizerKernels.adam(
                                        w.baseAddress!, m.baseAddress!, v.baseAddress!, g.baseAddress!, count: count,
                                        step: step)
                                }
                            }
                        }
                    }
                }
            }
            #expect(w.map(\.bitPattern) == expectedW.map(\.bitPattern), "w, \(count) values, t \(t), AVX-512 \(avx512)")
            #expect(m.map(\.bitPattern) == expectedM.map(\.bitPattern), "m, \(count) values, t \(t), AVX-512 \(avx512)")
            #expect(v.map(\.bitPattern) == expectedV.map(\.bitPattern), "v, \(count) values, t \(t), AVX-512 \(avx512)")
        }
    }
}

/// SGD's one-pass kernel (Step.c, eight lanes at a time with AVX2) computes, bit for bit, the
/// scalar loops of `SGD`'s formulas, every operation rounded as written: for every length up to 21
/// and a long one, with and without momentum, decayed and not.
@Test(arguments: Array(0...21) + [1000])
func sgdKernelIsTheFormulasElementByElement(count: Int) {
    var generator = RandomGenerator(seed: UInt64(300 + count))
    func values(scale: Float) -> [Float] {
        (0..<count).map { _ in
            let magnitude = Float(Foundation.pow(10, Double(generator.nextUniform() * 8 - 6)))
            return generator.nextUniform() < 0.1 ? 0 : (generator.nextUniform() < 0.5 ? -1 : 1) * magnitude * scale
        }
    }
    let (w0, g, velocity0) = (values(scale: 1), values(scale: 1), values(scale: 0.1))
    let lr: Float = 0.1
    for (decay, momentum) in [(Float(1), Float(0)), (Float(1 - 0.1 * 3e-2), Float(0)), (Float(1 - 0.1 * 3e-2), 0.9)] {
        var (w, velocity) = (w0, velocity0)
        var (expectedW, expectedVelocity) = (w0, velocity0)
        for i in 0..<count {
            if momentum > 0 {
                expectedVelocity[i] = momentum * expectedVelocity[i] + g[i]
                expectedW[i] = expectedW[i] * decay - lr * expectedVelocity[i]
            } else {
                expectedW[i] = expectedW[i] * decay - lr * g[i]
            }
        }
        w.withUnsafeMutableBufferPointer { w in
            velocity.withUnsafeMutableBufferPointer { velocity in
                g.withUnsafeBufferPointer { g in
                    if count > 0 {
                        OptimizerKernels.sgd(
                            w.baseAddress!, velocity: momentum > 0 ? velocity.baseAddress! : nil, g.baseAddress!,
                            count: count, decay: decay, learningRate: lr, momentum: momentum)
                    }
                }
            }
        }
        #expect(w.map(\.bitPattern) == expectedW.map(\.bitPattern), "w, \(count) values, momentum \(momentum)")
        #expect(
            velocity.map(\.bitPattern) == expectedVelocity.map(\.bitPattern), "velocity, \(count) values, \(momentum)")
    }
}
