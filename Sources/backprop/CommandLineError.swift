import Foundation
import ArgumentParser
import BackpropNetwork

/// An error the command line reports as one line on stderr, with exit status 1.
struct CommandLineError: Error, CustomStringConvertible {
    /// What went wrong, naming the file or option and what was expected and found.
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// `value` as one of `Choice`'s cases, or an error naming `option`, the values it takes and the one
/// found: `--optimizer: expected one of sgd, momentum, adam, adamw, found 'adma'`.
func parseChoice<Choice: RawRepresentable & CaseIterable>(_ value: String, option: String) throws -> Choice
where Choice.RawValue == String {
    guard let choice = Choice(rawValue: value) else {
        let choices = Choice.allCases.map(\.rawValue).joined(separator: ", ")
        throw ValidationError("\(option): expected one of \(choices), found '\(value)'")
    }
    return choice
}

/// A number option read as a `Float`, with the text the user gave: a message names the text, not
/// the `Float` it rounds to (`--lr 1e40` reads as infinity, `--lr 1e-50` as 0, and neither is
/// what was typed).
struct FloatArgument: ExpressibleByArgument, Equatable {
    /// The value, rounded to a `Float`.
    let value: Float
    /// The text given (a default's shortest decimal).
    let text: String

    init?(argument: String) {
        guard let value = Float(argument) else { return nil }
        self.value = value
        text = argument
    }

    init(_ value: Float) {
        self.value = value
        text = "\(value)"
    }

    var defaultValueDescription: String { text }

    /// The value, or a `ValidationError` naming `option`, the range valid (`expected`) and the
    /// text given, when the value is NaN, beyond the largest `Float` (or typed as infinity), or
    /// (for an option that must be `positive`) rounded to 0 from a number that is not 0.
    ///
    /// Other values out of range are the library's to refuse (`TrainingConfiguration.validate`):
    /// a finite `Float` is the number typed, only spelled the shortest way.
    /// - Parameters:
    ///   - option: the option's name, `--lr`.
    ///   - expected: the range valid, in words (`a positive number`).
    ///   - positive: whether 0 is out of range, so that a number that rounds to it is refused.
    func checked(_ option: String, expected: String, positive: Bool) throws -> Float {
        let why: String
        if value.isNaN {
            why = ", which is not a number"
        } else if value.isInfinite {
            why = ", beyond the largest Float (\(Float.greatestFiniteMagnitude))"
        } else if positive && value == 0 && !Self.spellsZero(text) {
            why = ", which rounds to 0 as a Float (the smallest positive one is \(Float.leastNonzeroMagnitude))"
        } else {
            return value
        }
        throw ValidationError("\(option): expected \(expected), found \(text)\(why)")
    }

    /// Whether `text` is a zero however written (`0`, `-0.0`, `0e5`, `0x0p3`): every digit of its
    /// significand is 0. Not `Double(text) == 0`, which `1e-3000` is too (it underflows Double).
    static func spellsZero(_ text: String) -> Bool {
        var significand = Substring(text.lowercased())
        if let sign = significand.first, sign == "-" || sign == "+" { significand = significand.dropFirst() }
        let hex = significand.hasPrefix("0x")
        if hex { significand = significand.dropFirst(2) }
        significand = significand.prefix { $0 != (hex ? "p" : "e") }
        return significand.allSatisfy { $0 == "0" || $0 == "." }
    }
}

/// `--layers` parsed (`nil` when not given), or a `ValidationError` with the parser's message, which
/// names the option, the entry and what it expected.
func parseLayers(_ layers: String?) throws -> ModelDescription? {
    guard let layers else { return nil }
    do {
        return try ModelDescription(parsing: layers)
    } catch {
        throw ValidationError(error.description)
    }
}

/// The argument parser's message for an option value that does not parse as the option's type
/// (`The value '-1' is invalid for '--seed <seed>'`), rewritten to say what the option takes, as
/// the other messages do: `--seed: expected a whole number from 0 to 18446744073709551615, found
/// '-1'`. An option with a fixed set of values (`bench --only`), whose message lists them (`…
/// Please provide one of 'seed', 'minibatch' or 'mlp'.`), says so the same way: `--only: expected
/// one of seed, minibatch or mlp, found 'x'`. `nil` for any other message, or a number option not
/// listed in ``valueKinds``.
func optionValueMessage(_ message: String) -> String? {
    let prefix = "The value '"
    guard message.hasPrefix(prefix), let marker = message.range(of: "' is invalid for '--", options: .backwards)
    else { return nil }
    let value = message[message.index(message.startIndex, offsetBy: prefix.count)..<marker.lowerBound]
    let rest = message[message.index(marker.upperBound, offsetBy: -2)...]  // "--seed <seed>'…"
    let option = String(rest.prefix { $0 != " " && $0 != "'" })
    if let list = rest.range(of: "'. Please provide one of ") {
        let choices = rest[list.upperBound...].trimmingCharacters(in: .whitespacesAndNewlines)
        let names = (choices.hasSuffix(".") ? String(choices.dropLast()) : choices).replacingOccurrences(
            of: "'", with: "")
        return "\(option): expected one of \(names), found '\(value)'"
    }
    guard let kind = valueKinds[option] else { return nil }
    let expected: String
    var why = ""
    switch kind {
    case .integer:
        expected = "a whole number"
        // Digits alone that do not parse are past the range of `Int`.
        let digits = value.drop { $0 == "-" || $0 == "+" }
        if !digits.isEmpty && digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
            why =
                value.hasPrefix("-") ? ", below the smallest one (\(Int.min))" : ", beyond the largest one (\(Int.max))"
        }
    case .seed:
        expected = "a whole number from 0 to \(UInt64.max)"
    case .real:
        expected = "a number (such as 0.003 or 1e-3)"
    }
    return "\(option): expected \(expected), found '\(value)'\(why)"
}

/// What each number option of the commands takes, for ``optionValueMessage(_:)``: the same name
/// has the same type in every command (train's `--hidden`, a list, has its own message).
private enum ValueKind { case integer, seed, real }

private let valueKinds: [String: ValueKind] = [
    "--epochs": .integer, "--batch-size": .integer, "--limit": .integer, "--threads": .integer, "--runs": .integer,
    "--rows": .integer, "--samples": .integer, "--hidden": .integer, "--seed": .seed, "--lr": .real,
    "--weight-decay": .real, "--relative-tolerance": .real, "--absolute-tolerance": .real,
]
