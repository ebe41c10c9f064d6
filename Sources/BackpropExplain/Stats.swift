import BackpropCore
import BackpropNetwork
import Foundation

// Activation statistics: the lesson's check that Kaiming initialisation keeps what flows through
// the network near mean 0 and standard deviation 1, layer after layer (after a ReLU the mean rises
// to about 0.5 and the standard deviation falls to about 0.8, since half the values become 0).

/// The mean and standard deviation of one tensor, as the lesson prints them after a layer.
struct ActivationStatistics: Sendable, Equatable {
    /// Whose values these are: `"x"`, `"L1.out"`.
    let name: String
    /// The tensor's shape.
    let shape: [Int]
    /// The mean of all values: `Σx / N`.
    let mean: Double
    /// The standard deviation with Bessel's correction, as PyTorch's `std()`:
    /// `√(Σ(x - mean)² / (N - 1))`; NaN when the tensor has fewer than two values.
    let std: Double

    /// Computes the statistics of `tensor` in Double, in two passes (mean, then squared deviations).
    init(name: String, tensor: Tensor) {
        self.name = name
        self.shape = tensor.shape
        let (mean, std) = tensor.withUnsafeBufferPointer { values -> (Double, Double) in
            guard !values.isEmpty else { return (.nan, .nan) }
            var sum = 0.0
            for value in values { sum += Double(value) }
            let mean = sum / Double(values.count)
            guard values.count > 1 else { return (mean, .nan) }
            var squares = 0.0
            for value in values {
                let deviation = Double(value) - mean
                squares += deviation * deviation
            }
            return (mean, (squares / Double(values.count - 1)).squareRoot())
        }
        self.mean = mean
        self.std = std
    }

    /// `L1.out: mean 0.0123, std 0.9876`, for the walkthrough; a tensor of one value has no
    /// standard deviation with Bessel's correction, and says so (PyTorch's `std()` gives nan).
    var summary: String {
        let deviation =
            std.isNaN && shape.reduce(1, *) == 1
            ? "no std (one value; std() divides by N - 1 = 0)" : "std \(String(format: "%.4f", std))"
        return "\(name): mean \(String(format: "%.4f", mean)), \(deviation)"
    }
}

extension Trace {
    /// The statistics of the model's input and of every layer's output, in the order they were
    /// computed (`x`, `L1.out`, `R.out`, `L2.out` for the seed's model).
    var activationStatistics: [ActivationStatistics] {
        var result = [ActivationStatistics(name: Slot.x.description, tensor: x)]
        for step in steps {
            guard case .layerForward(let index) = step.event,
                let out = step.snapshot.tensor(Slot(layerNames[index], "out"))
            else { continue }
            result.append(ActivationStatistics(name: "\(layerNames[index]).out", tensor: out))
        }
        return result
    }
}
