import BackpropCore
import Foundation

/// How the learning rate changes over a training run, as a function of the step.
///
/// `progress = step / totalSteps` runs from 0 (the first step) towards 1 (the last), and
/// `lr` is the peak learning rate (`--lr`; for a `Trainer`, its optimizer's learning rate when
/// the trainer was made):
/// - `constant`: `lr` throughout.
/// - `cosine`: a linear warm-up from 0 to `lr` over the first 5% of the steps, then a cosine
///   decay to 0: `lr · (1 + cos(π·p)) / 2`, `p` the progress after the warm-up.
/// - `oneCycle`: the shape of fast.ai's `fit_one_cycle` (Smith, 2018): a cosine rise from `lr / 25`
///   to `lr` over the first 25% of the steps, then a cosine fall to `lr / (25·10⁵)`.
///   NOTE: fastai's own (`combined_cos(0.25, lr/25, lr, lr/div_final)`, `div_final=1e5`) ends at
///   `lr / 10⁵`; here the final division applies to the starting `lr / 25`, as PyTorch's
///   `OneCycleLR` applies its `final_div_factor`. Every result recorded in the repository was
///   trained so; the last steps' rates differ by at most `lr · 10⁻⁵`.
public enum LearningRateSchedule: String, CaseIterable, Sendable, Codable {
    case constant
    case cosine
    case oneCycle = "one-cycle"

    /// The learning rate for step `step` (counting from 0) of `totalSteps`.
    /// - Precondition: `0 ≤ step`, `totalSteps > 0`.
    public func learningRate(peak: Float, step: Int, totalSteps: Int) -> Float {
        precondition(step >= 0 && totalSteps > 0, "learningRate: step \(step) of \(totalSteps)")
        let progress = min(Double(step) / Double(totalSteps), 1)
        let lr = Double(peak)
        switch self {
        case .constant:
            return peak
        case .cosine:
            let warmup = 0.05
            // Step 0 gets lr / warm-up steps rather than 0, so that no step is wasted.
            if progress < warmup { return Float(min(lr * Double(step + 1) / (warmup * Double(totalSteps)), lr)) }
            return Float(cosineBetween(lr, 0, fraction: (progress - warmup) / (1 - warmup)))
        case .oneCycle:
            let warmup = 0.25
            let start = lr / 25
            let end = lr / 25 / 1e5
            if progress < warmup { return Float(cosineBetween(start, lr, fraction: progress / warmup)) }
            return Float(cosineBetween(lr, end, fraction: (progress - warmup) / (1 - warmup)))
        }
    }
}

/// From `start` (fraction 0) to `end` (fraction 1) along half a cosine: `end + (start - end)·(1 + cos πf)/2`.
private func cosineBetween(_ start: Double, _ end: Double, fraction: Double) -> Double {
    end + (start - end) * (1 + Foundation.cos(Double.pi * fraction)) / 2
}
