import Foundation
import Testing

@testable import BackpropData

// Messages that name what the user gave (Docs/BadInputs.md): `train --lr 1e40` names 1e40, not
// the infinity it rounds to as a Float, and says what range is valid (so do --weight-decay, and
// --lr 1e-50, which rounds to 0); a data file that is a symbolic link to nothing is named as such,
// with its target, not as missing.

@Suite("Messages name the number typed and where a dangling link points")
struct OptionTextAndLinkTests {
    /// Runs `backprop` with `arguments`; expects exit status 1, no trap, nothing on standard output
    /// and exactly `message` on standard error.
    static func expectRefused(
        _ arguments: [String], _ message: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let run = try runBackprop(arguments)
        #expect(!run.crashed, "\(arguments): \(run.standardError)", sourceLocation: sourceLocation)
        #expect(run.status != 0, "\(arguments)", sourceLocation: sourceLocation)
        #expect(run.standardOutput.isEmpty, "\(arguments): \(run.standardOutput)", sourceLocation: sourceLocation)
        #expect(run.standardError == "Error: \(message)\n", "\(arguments)", sourceLocation: sourceLocation)
    }

    static let largest = "3.4028235e+38"

    @Test(
        "train's Float options name the text given when it is not finite or rounds to 0",
        arguments: [
            (["--lr", "1e40"], "--lr: expected a positive number, found 1e40, beyond the largest Float (\(largest))"),
            (["--lr=-1e40"], "--lr: expected a positive number, found -1e40, beyond the largest Float (\(largest))"),
            (["--lr", "inf"], "--lr: expected a positive number, found inf, beyond the largest Float (\(largest))"),
            (["--lr", "nan"], "--lr: expected a positive number, found nan, which is not a number"),
            (
                ["--lr", "1e-50"],
                "--lr: expected a positive number, found 1e-50, which rounds to 0 as a Float (the smallest positive "
                    + "one is 1e-45)"
            ),
            // Past Double's range too: it read "found 0.0", as if 0 had been typed.
            (
                ["--lr", "1e-3000"],
                "--lr: expected a positive number, found 1e-3000, which rounds to 0 as a Float (the smallest "
                    + "positive one is 1e-45)"
            ),
            (
                ["--weight-decay", "1e40"],
                "--weight-decay: expected a number ≥ 0, found 1e40, beyond the largest Float (\(largest))"
            ),
            (["--weight-decay", "NaN"], "--weight-decay: expected a number ≥ 0, found NaN, which is not a number"),
        ])
    func floatOptionsNameTheTextGiven(arguments: [String], message: String) throws {
        // `--data` names no data set: the option is refused before the data are looked for.
        try Self.expectRefused(["train"] + arguments + ["--data", "/no/such/data"], message)
    }

    @Test("finite values keep the library's messages; 0 spelled any way is 0; a tiny weight decay is 0")
    func finiteValuesAsBefore() throws {
        try Self.expectRefused(["train", "--lr", "0"], "--lr: expected a positive number, found 0.0")
        try Self.expectRefused(["train", "--lr", "0e5"], "--lr: expected a positive number, found 0.0")
        try Self.expectRefused(["train", "--lr", "0x0p-3000"], "--lr: expected a positive number, found 0.0")
        try Self.expectRefused(["train", "--lr", "-0.000e-3000"], "--lr: expected a positive number, found -0.0")
        try Self.expectRefused(["train", "--lr=-1e-1"], "--lr: expected a positive number, found -0.1")
        // --weight-decay 1e-50 rounds to 0, a valid decay: the run goes on to the next check.
        try Self.expectRefused(
            ["train", "--weight-decay", "1e-50", "--epochs", "0"], "--epochs: expected a positive number, found 0")
        try Self.expectRefused(
            ["train", "--lr", "abc"], "--lr: expected a number (such as 0.003 or 1e-3), found 'abc'")
    }

    /// Control characters in what a message quotes (a path, a tensor name from a file) are written
    /// as escapes: ESC from a file reached the terminal as an escape sequence (`\u{1B}[31m` turned
    /// it red), NUL and the one-byte CSI as raw bytes.
    @Test("control characters in a message are escaped, not sent to the terminal")
    func controlCharactersInMessagesAreEscaped() throws {
        try Self.expectRefused(
            ["evaluate", "--model", "/no/such/a\u{1B}[31mb\u{9B}c\u{7F}\td.safetensors"],
            "/no/such/a\\u{1B}[31mb\\u{9B}c\\u{7F}\td.safetensors: no such file")
    }

    @Test("a data file that is a dangling symbolic link is named with its target, not as missing")
    func danglingLinkInTheDataFolder() throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 2)
            let images = folder + "/train-images-idx3-ubyte"
            try FileManager.default.removeItem(atPath: images)
            #expect(symlink("/no/such/place/train-images-idx3-ubyte.gz", images + ".gz") == 0)
            let labels = folder + "/t10k-labels-idx1-ubyte"
            try FileManager.default.removeItem(atPath: labels)
            #expect(symlink("gone/labels", labels) == 0)  // relative to the link's folder
            try Self.expectRefused(
                ["explain", "--data", folder],
                "\(folder): train-images-idx3-ubyte.gz is a symbolic link to "
                    + "/no/such/place/train-images-idx3-ubyte.gz, which does not exist; t10k-labels-idx1-ubyte is a "
                    + "symbolic link to gone/labels (\(folder)/gone/labels), which does not exist")
            expectDataError(containing: ["train-images-idx3-ubyte.gz is a symbolic link to /no/such/place/"]) {
                try FashionMNIST(directory: folder)
            }
            // A link that loops, and a chain of links that ends nowhere.
            try FileManager.default.removeItem(atPath: images + ".gz")
            #expect(symlink("train-images-idx3-ubyte", images) == 0)
            try FileManager.default.removeItem(atPath: labels)
            #expect(symlink("middle", labels) == 0)
            #expect(symlink("/no/such/file", folder + "/middle") == 0)
            try Self.expectRefused(
                ["explain", "--data", folder],
                "\(folder): train-images-idx3-ubyte is a symbolic link that loops (too many levels of symbolic "
                    + "links); expected a link to a file; t10k-labels-idx1-ubyte is a symbolic link to middle "
                    + "(\(folder)/middle), which leads to no file (a chain of links that ends nowhere)")
            // A file missing without a link is still "missing".
            try FileManager.default.removeItem(atPath: labels)
            try Self.expectRefused(
                ["explain", "--data", folder],
                "\(folder): train-images-idx3-ubyte is a symbolic link that loops (too many levels of symbolic "
                    + "links); expected a link to a file; missing t10k-labels-idx1-ubyte.gz or t10k-labels-idx1-ubyte")
            // --data itself a link that loops: it was "no such folder".
            #expect(symlink("loopy", folder + "/loopy") == 0)
            try Self.expectRefused(
                ["explain", "--data", folder + "/loopy"],
                "\(folder)/loopy: is a symbolic link that loops; expected a folder holding train-images-idx3-ubyte[.gz], "
                    + "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] (give "
                    + "--data DIR or set BACKPROP_DATA)")
        }
    }

    @Test("any input file that is a dangling symbolic link is named with its target")
    func danglingLinkAsAnInputFile() throws {
        try withTemporaryFolder { folder in
            let link = folder + "/weights.safetensors"
            #expect(symlink("/no/such/weights.safetensors", link) == 0)
            try Self.expectRefused(
                ["seed", "--tensors", link],
                "\(link): is a symbolic link to /no/such/weights.safetensors, which does not exist")
            expectDataError(containing: ["\(link): is a symbolic link to /no/such/weights.safetensors"]) {
                try Safetensors.read(path: link)
            }
            // A missing file that is not a link is still "no such file".
            try Self.expectRefused(
                ["seed", "--tensors", folder + "/none.safetensors"], "\(folder)/none.safetensors: no such file")
        }
    }
}
