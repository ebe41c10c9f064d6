import ArgumentParser
import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import CKernels
import Foundation

/// The `backprop` command: the seed's program and the tools built around it.
///
/// The command line parses arguments, calls the library and formats what it returns; no numerics
/// live here. Errors reach the user as one line on stderr and a non-zero exit status.
@main
struct BackpropCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backprop",
        abstract: "A neural network from its foundations, and backpropagation step by step.",
        discussion: """
            Runs fast.ai's "fully connected" lesson in Swift: the seed's Lin, ReLU, Mse and Model \
            on Fashion-MNIST, with hand-written gradients that an autograd engine and finite \
            differences check.
            """,
        version: "0.1.0",
        subcommands: [
            SeedCommand.self,
            ExplainCommand.self,
            BenchCommand.self,
            GradcheckCommand.self,
            NearCommand.self,
            TrainCommand.self,
            EvaluateCommand.self,
            ExportCommand.self,
        ]
    )

    /// Throws naming `BACKPROP_THREADS` when it is set to anything but a count of 1 to 64 (empty
    /// counts as not set). The library ignores such a value and takes the processors; on the
    /// command line a typo should not go unseen.
    static func checkEnvironment() throws {
        guard let text = ProcessInfo.processInfo.environment["BACKPROP_THREADS"], !text.isEmpty else { return }
        guard let count = Int(text), (1...64).contains(count) else {
            throw ValidationError("BACKPROP_THREADS: expected a number of threads from 1 to 64, found '\(text)'")
        }
    }

    /// Parses the arguments and runs the chosen subcommand; any error becomes one line on stderr
    /// (`Error: …`) and a non-zero exit status, never a usage dump or a stack trace. `--help` and
    /// `--version` print as usual. An `ExitCode` thrown by a command that has printed its report
    /// (`near`, `gradcheck`: status 1 when a check fails) exits with that status and prints nothing.
    /// (OpenBLAS was told to start no threads before it loaded: `CStartup`.)
    static func main() {
        // Under a small `ulimit -s` (the stack overflowed under 64 KiB), the command runs on a
        // thread with a stack of 8 MiB, the usual limit, which the limit does not bound. Where no
        // such thread can be started (`ulimit -u`, or its stack past `ulimit -v`), the command is
        // refused: on the small stack it overflowed (SIGSEGV), even `--version`.
        let stack = 8 << 20
        if bp_stack_limit_below(stack) != 0 {
            let error = bp_run_on_stack(stack, runCommandOnItsThread, nil)
            if error == 0 { return }
            bp_refuse_small_stack(stack, error)
        }
        runCommand()
    }

    /// ``main()``'s work, on whichever thread has the stack for it.
    fileprivate nonisolated static func runCommand() {
        StandardStream.prepareProcess()
        FileSystemPath.registerCommandLineArguments()
        OutOfMemory.install()
        do {
            try DistributedRun.agreeOnCommand(CommandLine.arguments)
            var command = try parseAsRoot()
            OutOfMemory.adviseFor(command)
            // One handler per command, installed once: `train` turns a signal into a request it
            // polls (status 128 + signal); the others end at once, by the signal, after removing a
            // temporary file. (Installing the second over the first left a moment in which Ctrl-C
            // ended `train` by the signal.) Parsing, before it, writes no file.
            if command is TrainCommand { Interruption.install() } else { Interruption.installCleanExit() }
            try checkEnvironment()
            try command.run()
            StandardStream.finishOutput()
        } catch let status as ExitCode {
            Foundation.exit(status.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                // `--help`, `--version`: printed through the checked stream, so that a closed or
                // full standard output is an error here too, not a silent exit 0.
                StandardStream.output.write(fullMessage(for: error) + "\n")
                StandardStream.finishOutput()
                Foundation.exit(0)
            }
            let message = self.message(for: error)
            StandardStream.error.write("Error: \(oneLine(optionValueMessage(message) ?? message))\n")
            Foundation.exit(code.rawValue)
        }
    }
}

/// An error message as one line: without the usage and help that the argument parser appends on
/// lines of their own, and with any other line break (a path or a `--layers` value given with a
/// newline in it) written `\n`, so that the message is not cut short where the path breaks. Other
/// control characters (a tensor name or a dtype in a file holding ESC or NUL) are written as
/// `\u{1B}`: sent raw, an escape sequence from a file would drive the terminal.
func oneLine(_ message: String) -> String {
    var lines: [Substring] = []
    for line in message.split(separator: "\n", omittingEmptySubsequences: false) {
        if !lines.isEmpty && (line.hasPrefix("Usage:") || line.hasPrefix("Help:") || line.hasPrefix("  See '")) {
            break
        }
        lines.append(line)
    }
    while lines.count > 1, lines.last?.isEmpty == true { lines.removeLast() }
    let joined = lines.joined(separator: "\\n").replacingOccurrences(of: "\r", with: "\\r")
    var result = String.UnicodeScalarView()
    for scalar in joined.unicodeScalars {
        // C0 controls but the tab, DEL, and the C1 controls (0x9B is a one-byte CSI).
        if (scalar.value < 0x20 && scalar != "\t") || (0x7F...0x9F).contains(scalar.value) {
            result.append(contentsOf: "\\u{\(String(scalar.value, radix: 16, uppercase: true))}".unicodeScalars)
        } else {
            result.append(scalar)
        }
    }
    return String(result)
}

/// ``BackpropCommand/runCommand()`` as a C function, for `bp_run_on_stack` (not isolated to the
/// main actor, as `main()` is: it runs on the thread that function creates).
private func runCommandOnItsThread(_: UnsafeMutableRawPointer?) {
    BackpropCommand.runCommand()
}
