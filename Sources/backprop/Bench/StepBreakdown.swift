import BackpropCore
import BackpropNetwork
import BackpropTraining

/// Where a training step's time goes, layer by layer: each layer's forward and backward, the
/// loss, and the optimizer's update, summed over the steps of an epoch (median of the runs).
///
/// The step is the model's own, taken apart: `Model.callAsFunction` is `for l in layers: x = l(x)`
/// then the loss, and `Model.backward()` the loss's backward then each layer's, last to first;
/// here each call is timed on its own. The sums are the epoch's time less the batch gathering.
struct StepBreakdown: Encodable {
    /// One layer's share: its name in the model (`layers.I` and its kind), and milliseconds per
    /// epoch forward and backward.
    struct Part: Encodable {
        /// `layers.I kind` (`layers.0 Conv2d`), or `loss`, or `optimizer`.
        let name: String
        /// Milliseconds per epoch in the forward pass (the optimizer's step for `optimizer`).
        let forwardMilliseconds: Double
        /// Milliseconds per epoch in the backward pass (0 for `optimizer`).
        let backwardMilliseconds: Double

        private enum CodingKeys: String, CodingKey {
            case name
            case forwardMilliseconds = "forward_ms"
            case backwardMilliseconds = "backward_ms"
        }
    }

    /// The parts, in the order of the forward pass, then the loss and the optimizer.
    let parts: [Part]

    /// Times `runs` epochs of `model` over `batches` with `optimizer` (a warm-up epoch first) and
    /// keeps, for each part, the median over the runs of its epoch total.
    /// - Precondition: `runs ≥ 1`; the model fits the batches.
    static func measure(model: Model, optimizer: any Optimizer, batches: Batches, runs: Int) -> StepBreakdown {
        precondition(runs >= 1, "StepBreakdown.measure: runs must be positive, got \(runs)")
        let count = model.layers.count
        var totals: [[Double]] = []  // per run: forward per layer, loss, optimizer, then backward per layer, loss
        for run in 0...runs {
            var forward = [Double](repeating: 0, count: count + 2)
            var backward = [Double](repeating: 0, count: count + 1)
            batches.shuffle(seed: 0, epoch: run)
            for step in 0..<batches.count {
                let (xb, yb) = batches.batch(step)
                var x = xb
                for (index, layer) in model.layers.enumerated() {
                    let start = Timing.now()
                    x = layer(x)
                    forward[index] += Timing.now() - start
                }
                var start = Timing.now()
                _ = model.loss(x, yb).item()
                forward[count] += Timing.now() - start
                start = Timing.now()
                model.loss.backward()
                backward[count] += Timing.now() - start
                for (index, layer) in model.layers.enumerated().reversed() {
                    start = Timing.now()
                    layer.backward()
                    backward[index] += Timing.now() - start
                }
                start = Timing.now()
                optimizer.step()
                optimizer.zeroGrad()
                forward[count + 1] += Timing.now() - start
            }
            if run > 0 { totals.append(forward + backward) }
        }
        let medians = (0..<(2 * count + 3)).map { column in Timing.median(totals.map { $0[column] }) * 1000 }
        var parts = model.layers.enumerated().map { index, layer in
            Part(
                name: "layers.\(index) \(type(of: layer))", forwardMilliseconds: medians[index],
                backwardMilliseconds: medians[count + 2 + index])
        }
        parts.append(
            Part(name: "loss", forwardMilliseconds: medians[count], backwardMilliseconds: medians[2 * count + 2]))
        parts.append(Part(name: "optimizer", forwardMilliseconds: medians[count + 1], backwardMilliseconds: 0))
        return StepBreakdown(parts: parts)
    }
}
