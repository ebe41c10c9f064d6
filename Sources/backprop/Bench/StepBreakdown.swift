import BackpropCore
import BackpropNetwork
import BackpropTraining

/// Where a training step's time goes, layer by layer: each layer's forward and backward, the
/// loss, and the optimizer's update, summed over the steps of an epoch (median of the runs).
///
/// The step is the model's own, taken apart: `Model.callAsFunction` is `for l in layers: x = l(x)`
/// then the loss, and `Model.backward()` the loss's backward then each layer's, last to first;
/// here each call is timed on its own, and so is the gathering of each batch's rows. It also counts,
/// per step, the tensors allocated and the loops handed to the thread pool (and the helpers those
/// woke): where a small step's time goes besides the arithmetic (issue 16); and each layer's FLOPs,
/// so that each part can be read against its own floor.
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
        /// Per step, forward and backward together (the median epoch's): microseconds its callers
        /// waited for the pool's helpers, and loops that had to wake a sleeping helper. A layer
        /// that wakes the helper at every step follows a serial stretch long enough for the helper
        /// to fall asleep (the cnn's dropout drew its masks on one core: BENCHMARKS.md, "Masked
        /// loads on Zen 1; dropout's masks on both cores").
        let poolWaitMicrosecondsPerStep: Double
        /// Per step, the loops of this part that woke a sleeping helper (see above).
        let poolWakeUpsPerStep: Double
        /// FLOPs per epoch of the part's products, forward and backward (2 per multiply-add,
        /// `WorkloadCost.multiplyAdds(of:outputShape:)` on each call's shapes; 0 for a part
        /// without products): the part's floor is `FLOPs / FMA rate`.
        let forwardFlops: Double
        let backwardFlops: Double

        private enum CodingKeys: String, CodingKey {
            case name
            case forwardMilliseconds = "forward_ms"
            case backwardMilliseconds = "backward_ms"
            case poolWaitMicrosecondsPerStep = "pool_wait_us_per_step"
            case poolWakeUpsPerStep = "pool_wakeups_per_step"
            case forwardFlops = "forward_flops"
            case backwardFlops = "backward_flops"
        }
    }

    /// The parts, in the order of the forward pass, then the loss and the optimizer.
    let parts: [Part]
    /// Milliseconds per epoch gathering the batches' rows (`Batches.batch(_:)`): with more than
    /// one thread, only what the pool's helpers had not gathered in the background meanwhile.
    let batchMilliseconds: Double
    /// The steps of an epoch.
    let steps: Int
    /// Per step (the median epoch's counts over its steps): tensor storages allocated and their
    /// megabytes, loops handed to the thread pool and, of those, loops that had to wake a sleeping
    /// helper, and the microseconds their callers waited for the helpers (`ResourceCounters`).
    let allocationsPerStep: Double
    let allocatedMegabytesPerStep: Double
    let poolDispatchesPerStep: Double
    let poolWakeUpsPerStep: Double
    let poolWaitMicrosecondsPerStep: Double

    private enum CodingKeys: String, CodingKey {
        case parts
        case batchMilliseconds = "batches_ms"
        case steps
        case allocationsPerStep = "allocations_per_step"
        case allocatedMegabytesPerStep = "allocated_mb_per_step"
        case poolDispatchesPerStep = "pool_dispatches_per_step"
        case poolWakeUpsPerStep = "pool_wakeups_per_step"
        case poolWaitMicrosecondsPerStep = "pool_wait_us_per_step"
    }

    /// The parts' milliseconds per epoch, with the batch gathering.
    var totalMilliseconds: Double {
        parts.reduce(batchMilliseconds) { $0 + $1.forwardMilliseconds + $1.backwardMilliseconds }
    }

    /// Times `runs` epochs of `model` over `batches` with `optimizer` (a warm-up epoch first) and
    /// keeps, for each part, the median over the runs of its epoch total.
    /// - Precondition: `runs ≥ 1`; the model fits the batches.
    static func measure(model: Model, optimizer: any Optimizer, batches: Batches, runs: Int) -> StepBreakdown {
        precondition(runs >= 1, "StepBreakdown.measure: runs must be positive, got \(runs)")
        let count = model.layers.count
        var totals: [[Double]] = []  // per run: forward per layer, loss, optimizer, then backward per layer, loss
        var gathering: [Double] = []
        var counters: [ResourceCounters] = []
        // Per run, per part (the layers, the loss, the optimizer): the pool's wait (nanoseconds)
        // and wake-ups.
        var partCounters: [[(wait: Int, wakeUps: Int)]] = []
        // Per layer, the multiply-adds of its products in an epoch, forward and backward, counted
        // in the warm-up epoch from the shapes each call saw (the last batch may be smaller).
        var forwardMultiplyAdds = [Double](repeating: 0, count: count)
        var backwardMultiplyAdds = [Double](repeating: 0, count: count)
        for run in 0...runs {
            var forward = [Double](repeating: 0, count: count + 2)
            var backward = [Double](repeating: 0, count: count + 1)
            var pool = [(wait: Int, wakeUps: Int)](repeating: (0, 0), count: count + 2)
            /// Runs `body`, adding its pool counts to part `index`.
            func counting(_ index: Int, _ body: () -> Void) {
                let before = ResourceCounters.now
                body()
                let cost = ResourceCounters.now - before
                pool[index].wait += cost.poolWaitNanoseconds
                pool[index].wakeUps += cost.poolWakeUps
            }
            var gather = 0.0
            batches.shuffle(seed: 0, epoch: run)
            let before = ResourceCounters.now
            for step in 0..<batches.count {
                let gatherStart = Timing.now()
                let (xb, yb) = batches.batch(step)
                gather += Timing.now() - gatherStart
                var x = xb
                for (index, layer) in model.layers.enumerated() {
                    counting(index) {
                        let start = Timing.now()
                        x = layer(x)
                        forward[index] += Timing.now() - start
                    }
                    if run == 0,
                        let perExample = WorkloadCost.multiplyAdds(of: layer, outputShape: Array(x.shape.dropFirst()))
                    {
                        let rows = Double(x.shape.first ?? 0)
                        forwardMultiplyAdds[index] += rows * perExample.forward
                        backwardMultiplyAdds[index] += rows * perExample.backward
                    }
                }
                counting(count) {
                    var start = Timing.now()
                    _ = model.loss(x, yb).item()
                    forward[count] += Timing.now() - start
                    start = Timing.now()
                    model.loss.backward()
                    backward[count] += Timing.now() - start
                }
                // As Model.backward(): down to the first layer whose backward runs.
                let firstBackward = model.firstBackwardIndex
                for (index, layer) in model.layers.enumerated().reversed() where index >= firstBackward {
                    counting(index) {
                        let start = Timing.now()
                        layer.backward()
                        backward[index] += Timing.now() - start
                    }
                }
                counting(count + 1) {
                    let start = Timing.now()
                    optimizer.step()
                    optimizer.zeroGrad()
                    forward[count + 1] += Timing.now() - start
                }
            }
            if run > 0 {
                totals.append(forward + backward)
                gathering.append(gather)
                counters.append(ResourceCounters.now - before)
                partCounters.append(pool)
            }
        }
        let medians = (0..<(2 * count + 3)).map { column in Timing.median(totals.map { $0[column] }) * 1000 }
        let steps = Double(Swift.max(batches.count, 1))
        // Each part's pool counts from the run whose waits for that part are the median.
        let poolOf = { (index: Int) -> (waitMicroseconds: Double, wakeUps: Double) in
            let runs = partCounters.map { $0[index] }.sorted { $0.wait < $1.wait }
            let middle = runs[runs.count / 2]
            return (Double(middle.wait) / steps / 1e3, Double(middle.wakeUps) / steps)
        }
        let part = { (name: String, forward: Double, backward: Double, index: Int) -> Part in
            let pool = poolOf(index)
            let layer = index < count
            return Part(
                name: name, forwardMilliseconds: forward, backwardMilliseconds: backward,
                poolWaitMicrosecondsPerStep: pool.waitMicroseconds, poolWakeUpsPerStep: pool.wakeUps,
                forwardFlops: layer ? 2 * forwardMultiplyAdds[index] : 0,
                backwardFlops: layer ? 2 * backwardMultiplyAdds[index] : 0)
        }
        var parts = model.layers.enumerated().map { index, layer in
            part("layers.\(index) \(type(of: layer))", medians[index], medians[count + 2 + index], index)
        }
        parts.append(part("loss", medians[count], medians[2 * count + 2], count))
        parts.append(part("optimizer", medians[count + 1], 0, count + 1))
        let middle = counters.sorted { $0.allocations < $1.allocations }[counters.count / 2]
        return StepBreakdown(
            parts: parts, batchMilliseconds: Timing.median(gathering) * 1000, steps: batches.count,
            allocationsPerStep: Double(middle.allocations) / steps,
            allocatedMegabytesPerStep: Double(middle.allocatedBytes) / steps / 1e6,
            poolDispatchesPerStep: Double(middle.poolDispatches) / steps,
            poolWakeUpsPerStep: Double(middle.poolWakeUps) / steps,
            poolWaitMicrosecondsPerStep: Double(middle.poolWaitNanoseconds) / steps / 1e3)
    }
}
