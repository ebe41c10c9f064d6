import Foundation
import Testing

@testable import backprop

// The argument parser's message for a number option's value that does not parse says neither what
// the option takes nor why (`The value '2.5' is invalid for '--epochs <epochs>'`); the command line
// rewrites it (Docs/BadInputs.md): through the executable for each kind of option, then the
// rewriting's edges.
@Suite("A number option's unreadable value is named with what the option takes")
struct OptionValueMessageTests {
    @Test(
        "the executable names the option, what it takes and the text given",
        arguments: [
            (
                ["train", "--batch-size", "99999999999999999999"],
                "--batch-size: expected a whole number, found '99999999999999999999', beyond the largest one "
                    + "(9223372036854775807)"
            ),
            (["train", "--epochs", "2.5"], "--epochs: expected a whole number, found '2.5'"),
            (["train", "--threads", "many"], "--threads: expected a whole number, found 'many'"),
            (["seed", "--hidden", "50,abc"], "--hidden: expected a whole number, found '50,abc'"),
            (
                ["gradcheck", "--seed", "1e3"],
                "--seed: expected a whole number from 0 to 18446744073709551615, found '1e3'"
            ),
            (
                ["near", "a.safetensors", "b.safetensors", "--relative-tolerance", "x"],
                "--relative-tolerance: expected a number (such as 0.003 or 1e-3), found 'x'"
            ),
        ])
    func throughTheExecutable(_ arguments: [String], _ message: String) throws {
        let run = try runBackprop(arguments)
        #expect(!run.crashed && run.status == 64, "status \(String(describing: run.status)): \(run.standardError)")
        #expect(run.standardOutput.isEmpty)
        #expect(run.standardError == "Error: \(message)\n")
    }

    @Test("each kind of number option says what it takes")
    func kinds() {
        #expect(
            optionValueMessage("The value '2.5' is invalid for '--epochs <epochs>'")
                == "--epochs: expected a whole number, found '2.5'")
        #expect(
            optionValueMessage("The value '-1' is invalid for '--seed <seed>'")
                == "--seed: expected a whole number from 0 to 18446744073709551615, found '-1'")
        #expect(
            optionValueMessage("The value 'fast' is invalid for '--lr <lr>'")
                == "--lr: expected a number (such as 0.003 or 1e-3), found 'fast'")
    }

    @Test("digits past Int's range are told apart from text that is no number")
    func outOfRange() {
        #expect(
            optionValueMessage("The value '-99999999999999999999' is invalid for '--limit <limit>'")
                == "--limit: expected a whole number, found '-99999999999999999999', below the smallest one "
                + "(-9223372036854775808)")
        #expect(
            optionValueMessage("The value '9223372036854775808' is invalid for '--rows <rows>'")
                == "--rows: expected a whole number, found '9223372036854775808', beyond the largest one "
                + "(9223372036854775807)")
        // Not digits alone: a sign and nothing else, a digit that is not ASCII ('٣', Arabic-Indic three).
        #expect(
            optionValueMessage("The value '-' is invalid for '--rows <rows>'")
                == "--rows: expected a whole number, found '-'")
        #expect(
            optionValueMessage("The value '٣' is invalid for '--rows <rows>'")
                == "--rows: expected a whole number, found '٣'")
    }

    @Test("an option with a fixed set of values lists them in the same style")
    func choices() {
        #expect(
            optionValueMessage(
                "The value 'x' is invalid for '--only <only>'. Please provide one of 'seed', 'minibatch' or 'mlp'.")
                == "--only: expected one of seed, minibatch or mlp, found 'x'")
    }

    /// The arguments each command needs besides the option under test (none of them `option`).
    private static func required(_ command: String, besides option: String) -> [String] {
        switch command {
        case "near": return ["a.safetensors", "b.safetensors"]
        case "evaluate": return option == "--model" ? [] : ["--model", "m.safetensors"]
        case "export":
            return ["m.safetensors", "o.safetensors"] + (option == "--format" ? [] : ["--format", "pytorch"])
        default: return []
        }
    }

    @Test("no option of any command is left with the parser's bare 'is invalid for' message")
    func everyOptionIsCovered() throws {
        // Each option that takes a value, read off each command's help, given the value "x":
        // parsed only (nothing runs), the message the command line would print never is the
        // parser's own. This catches a number option added without an entry in `valueKinds`.
        var checked = 0
        for command in BackpropCommand.configuration.subcommands {
            let name = command.configuration.commandName ?? ""
            let help = BackpropCommand.helpMessage(for: command)
            for line in help.split(separator: "\n") {
                let words = line.split(separator: " ")
                guard words.count >= 2, words[0].hasPrefix("--"), words[1].hasPrefix("<") else { continue }
                let option = String(words[0])
                let arguments = [name] + Self.required(name, besides: option) + [option, "x"]
                do {
                    _ = try BackpropCommand.parseAsRoot(arguments)
                } catch {
                    let message = BackpropCommand.message(for: error)
                    let printed = optionValueMessage(message) ?? message
                    #expect(!printed.contains("is invalid for"), "\(arguments): \(printed)")
                }
                checked += 1
            }
        }
        #expect(checked >= 40, "only \(checked) options found in the commands' help")
    }

    @Test("a value with quotes in it is taken whole, up to the last ' is invalid for '")
    func quotesInTheValue() {
        #expect(
            optionValueMessage("The value 'a' is invalid for 'b' is invalid for '--runs <runs>'")
                == "--runs: expected a whole number, found 'a' is invalid for 'b'")
    }

    @Test("other messages, and options that are not numbers, are left as they are")
    func othersUnchanged() {
        #expect(optionValueMessage("Unknown option '--frob'") == nil)
        #expect(optionValueMessage("Missing value for '--lr <lr>'") == nil)
        #expect(optionValueMessage("The value 'x' is invalid for '--format <format>'") == nil)
        #expect(optionValueMessage("The value 'x' is invalid for ") == nil)
    }
}
