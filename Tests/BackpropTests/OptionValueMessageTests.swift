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
