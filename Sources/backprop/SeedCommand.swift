import ArgumentParser
import Backprop

/// `backprop seed`: the seed's program, one forward and one backward pass of `Model`.
struct SeedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seed",
        abstract: "Run the seed's program: loss = model(xTrain, yTrain); model.backward()."
    )

    func run() throws {
        print("seed: not yet")
    }
}
