import Backprop
import Foundation

/// What a new user of Backprop tries, end to end, each step checked:
///
/// 1. load Fashion-MNIST, train an MLP with the library's `Trainer`, save it, load it, predict,
///    write it as ONNX and read it back;
/// 2. a layer of one's own with a hand-written backward (`Swish`), checked by `gradientCheck`,
///    trained, saved and loaded;
/// 3. operations of one's own with their derivatives (`Sine`, `hypot`), checked by finite
///    differences.
///
///     swift run -c release UsingBackprop [DATA_DIR]
///
/// The data folder is the argument, else `$BACKPROP_DATA`, else Debian's
/// `/usr/share/datasets/fashion-mnist` (`Scripts/setup.sh` installs it). Exits with status 1 if a
/// check fails.
@main
struct UsingBackprop {
    /// The rows of the training file read: 10,000 train and 2,000 validate (and 10,000 test
    /// rows), so that the example runs in seconds in a release build.
    static let rows = 12_000

    static func main() {
        let directory = FashionMNIST.resolveDirectory(CommandLine.arguments.dropFirst().first)
        var checks = Checks()
        do {
            print("== Fashion-MNIST from \(directory), the first \(rows) rows")
            let data = try FashionMNIST(directory: directory, limit: rows)

            print("\n== 1. Train an MLP, save it, load it, predict; ONNX out and in")
            try trainSaveLoadPredict(data, &checks)

            print("\n== 2. A layer of one's own: Swish, with its hand-written backward")
            checkCustomLayer(data, &checks)
            try trainSaveLoadCustomLayer(data, &checks)

            print("\n== 3. Operations of one's own: Sine and hypot, with their derivatives")
            checkCustomOperations(&checks)
        } catch {
            print("error: \(error)")
            exit(1)
        }
        if !checks.failures.isEmpty {
            print("\n\(checks.failures.count) check(s) failed: \(checks.failures.joined(separator: "; "))")
            exit(1)
        }
        print("\nevery check passed")
    }
}
