import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

/// `backprop near`: the lesson's `test_near`, between the same-named tensors of two safetensors
/// files; exit status 1 if any pair is not near.
struct NearCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "near",
        abstract: "Compare the tensors of two safetensors files, as the lesson's test_near.",
        discussion: """
            For each tensor name in both files (or each one given with --tensors), checks \
            |actual - expected| <= absolute tolerance + relative tolerance × |expected| element by \
            element, ACTUAL from the first file and EXPECTED from the second, and prints the worst \
            element: its index, both values and the difference. Exits with status 1 if a pair is \
            not near or a name is missing from either file.
            """
    )

    @Argument(help: "The safetensors file under test.")
    var actual: String

    @Argument(help: "The reference safetensors file.")
    var expected: String

    @Option(help: "Tensor names to compare, comma-separated (default: every name in both files).")
    var tensors: String?

    // `.unconditional`: `--relative-tolerance -1` reads -1 (refused by `validate()`), not a missing value.
    @Option(parsing: .unconditional, help: "Allowed difference per unit of |expected| (test_near's 1e-3).")
    var relativeTolerance = FloatArgument(1e-3)

    @Option(parsing: .unconditional, help: "Allowed difference near zero (test_near's 1e-5).")
    var absoluteTolerance = FloatArgument(1e-5)

    func validate() throws {
        try PathArgument.checkNotEmpty(actual, option: "<actual>")
        try PathArgument.checkNotEmpty(expected, option: "<expected>")
        // A tolerance past Float's range would read as infinity and pass every element.
        for (option, tolerance) in [
            ("--relative-tolerance", relativeTolerance), ("--absolute-tolerance", absoluteTolerance),
        ] {
            let expected = "a number ≥ 0"
            if try tolerance.checked(option, expected: expected, positive: false) < 0 {
                throw ValidationError("\(option): expected \(expected), found \(tolerance.text)")
            }
        }
        // No names would compare nothing and pass.
        if let tensors, tensors.split(separator: ",").allSatisfy({ $0.allSatisfy(\.isWhitespace) }) {
            throw ValidationError("--tensors: expected tensor names, comma-separated, found '\(tensors)'")
        }
    }

    func run() throws {
        let actualFile = try Safetensors.read(path: actual)
        let expectedFile = try Safetensors.read(path: expected)
        let names: [String]
        var lines: [String] = []
        var allNear = true
        if let tensors {
            // Each name once: `--tensors w1,w1` counted w1 twice in "all 2 tensors".
            var seen: Set<String> = []
            names = tensors.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }.filter {
                seen.insert($0).inserted
            }
        } else {
            names = actualFile.names.filter { expectedFile.tensors[$0] != nil }
            for (file, other) in [(actualFile, expectedFile), (expectedFile, actualFile)] {
                let only = file.names.filter { other.tensors[$0] == nil }
                if !only.isEmpty {
                    lines.append("only in \(file.path): \(only.joined(separator: ", "))")
                    allNear = false
                }
            }
            if names.isEmpty {
                throw CommandLineError("\(actual) and \(expected) have no tensor name in common")
            }
        }
        for name in names {
            let report = near(
                try actualFile.tensor(name), try expectedFile.tensor(name), relativeTolerance: relativeTolerance.value,
                absoluteTolerance: absoluteTolerance.value)
            lines.append("\(name): \(report)")
            if !report.isNear { allNear = false }
        }
        lines.append(allNear ? "NEAR: \(allTensors(names.count))" : "NOT NEAR")
        print(lines.joined(separator: "\n"))
        if !allNear { throw ExitCode(1) }
    }
}
