import ArgumentParser
import Backprop

/// `backprop bench`: how fast the seed's step, training and matrix products run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the seed step, training epochs and matrix products (use a release build)."
    )

    @Option(help: "Timed runs per measurement (the median is reported).")
    var runs: Int = 7

    func run() throws {
        var generator = RandomGenerator(seed: 1)
        let x = Tensor.randn([50_000, 784], generator: &generator)
        let y = Tensor.randn([50_000], generator: &generator)
        let result = SeedStepBenchmark(x: x, y: y).run(runs: runs)
        print(
            "seed step: \(result.stepMilliseconds) ms (forward \(result.forwardMilliseconds), backward \(result.backwardMilliseconds), products \(result.productsMilliseconds))"
        )
    }
}
