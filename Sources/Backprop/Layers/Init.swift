import Foundation

// Weight initialisation, as the lesson does it:
//
//   w1 = torch.randn(m, nh) * math.sqrt(2/m)   # Kaiming: the layer is followed by a ReLU
//   b1 = torch.zeros(nh)
//   w2 = torch.randn(nh, 1) / math.sqrt(nh)    # the last layer: no ReLU after it
//   b2 = torch.zeros(1)
//
// Scaling by sqrt(gain / nIn) keeps the activations' variance about the same from layer to layer:
// a sum of nIn products has nIn times the variance of one, and a ReLU halves it (hence gain 2).

/// Weights drawn from a normal distribution scaled to keep activations' variance steady:
/// `randn(nIn, nOut) * sqrt(gain / nIn)`.
///
/// - `gain: 2` (the default) is Kaiming (He) initialisation, for a layer followed by a ReLU: the
///   lesson's `torch.randn(m, nh) * math.sqrt(2/m)`.
/// - `gain: 1` is for the last layer, which no ReLU follows: the lesson's
///   `torch.randn(nh, 1) / math.sqrt(nh)`.
///
/// Shape: `(nIn, nOut)`. The same generator state gives the same weights on every machine.
/// - Precondition: `nIn > 0`, `nOut >= 0`.
public func kaimingNormal(_ nIn: Int, _ nOut: Int, gain: Float = 2, generator: inout RandomGenerator) -> Tensor {
    precondition(nIn > 0 && nOut >= 0, "kaimingNormal: sizes \(nIn) × \(nOut) must be positive")
    let w = Tensor.randn([nIn, nOut], generator: &generator)  // (nIn, nOut)
    let scale = Float((Double(gain) / Double(nIn)).squareRoot())
    w.withUnsafeMutableBufferPointer { values in
        for i in values.indices { values[i] *= scale }
    }
    return w
}
