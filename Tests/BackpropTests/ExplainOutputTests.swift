import Foundation
import Testing

@testable import BackpropData

// `backprop explain --html FILE` and `--dot FILE` where FILE is a stream (Docs/BadInputs.md,
// "Output paths"): standard output (`-`, `/dev/stdout`, a link to it, or the file standard
// output is redirected to) gets the page or graph alone, written straight to it; so do
// `/dev/null` and a FIFO with a reader (the walkthrough goes to standard output as before). A
// regular file is still replaced atomically. What cannot be written is refused before the work
// where it can be known then (a FIFO without a reader), and named with the reason otherwise.

@Suite("Explain: --html and --dot to standard output, devices and pipes")
struct ExplainOutputTests {
    /// Runs `backprop explain` on a small random data set in a new folder, with `arguments`
    /// (`{dir}` replaced by the folder), through `/bin/sh` with `redirection` when one is given.
    static func explain(
        _ arguments: [String], redirection: String? = nil, _ body: (String, CommandResult) throws -> Void
    ) throws {
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 7)
            let filled =
                ["explain", "--data", folder] + arguments.map { $0.replacingOccurrences(of: "{dir}", with: folder) }
            let run: CommandResult
            if let redirection {
                let command = "exec \"$0\" \"$@\" " + redirection.replacingOccurrences(of: "{dir}", with: folder)
                run = try runProgram("/bin/sh", ["-c", command, backpropExecutable().path] + filled)
            } else {
                run = try runBackprop(filled)
            }
            #expect(!run.crashed, "\(arguments): \(run.standardError)")
            try body(folder, run)
        }
    }

    /// Expects `text` to be one whole DOT graph, and nothing else.
    static func expectDOTAlone(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(text.hasPrefix("digraph backprop {\n"), "\(text.prefix(200))", sourceLocation: sourceLocation)
        #expect(text.hasSuffix("}\n"), "\(text.suffix(200))", sourceLocation: sourceLocation)
        #expect(!text.contains("Wrote the computation graph"), sourceLocation: sourceLocation)
        #expect(!text.contains("Parameter gradients set"), sourceLocation: sourceLocation)
    }

    /// The names in `folder`, but the data set's four files.
    static func otherFiles(in folder: String) throws -> Set<String> {
        Set(try FileManager.default.contentsOfDirectory(atPath: folder)).subtracting(FashionMNIST.fileNames)
    }

    @Test("--dot - and --dot /dev/stdout into a pipe give the graph alone", arguments: ["-", "/dev/stdout"])
    func dotToStandardOutput(path: String) throws {
        try Self.explain(["--dot", path]) { folder, run throws in
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardError.isEmpty, "\(run.standardError)")
            Self.expectDOTAlone(run.standardOutput)
            #expect(try Self.otherFiles(in: folder).isEmpty)
        }
    }

    @Test("--html - and --html /dev/stdout give the page alone", arguments: ["-", "/dev/stdout"])
    func htmlToStandardOutput(path: String) throws {
        try Self.explain(["--html", path]) { _, run throws in
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardOutput.hasPrefix("<!DOCTYPE html>"), "\(run.standardOutput.prefix(200))")
            #expect(run.standardOutput.hasSuffix("</html>\n") || run.standardOutput.hasSuffix("</html>"))
            #expect(!run.standardOutput.contains("Wrote the walkthrough page"))
        }
    }

    @Test("a link named .dot to /dev/stdout, standard output a file: the graph goes into that file, not over it")
    func linkToStandardOutputRedirectedToAFile() throws {
        try withTemporaryFolder { scratch in
            #expect(symlink("/dev/stdout", scratch + "/graph.dot") == 0)
            try Self.explain(["--dot", scratch + "/graph.dot"], redirection: "> {dir}/out.txt") { folder, run throws in
                #expect(run.status == 0, "\(run.standardError)")
                // Before, the file was replaced by a rename: what the command printed was lost.
                let written = try String(contentsOfFile: folder + "/out.txt", encoding: .utf8)
                Self.expectDOTAlone(written)
                #expect(try Self.otherFiles(in: folder) == ["out.txt"])
            }
            var status = stat()
            #expect(lstat(scratch + "/graph.dot", &status) == 0 && status.st_mode & S_IFMT == S_IFLNK)
        }
    }

    @Test("/dev/null and /dev/stderr are written straight to; the walkthrough goes to standard output")
    func devicesAreWrittenStraight() throws {
        try Self.explain(["--dot", "/dev/null", "--html", "/dev/null"]) { _, run throws in
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardOutput.contains("Parameter gradients set"))
            #expect(run.standardOutput.contains("Wrote the walkthrough page to /dev/null"))
            #expect(run.standardOutput.contains("Wrote the computation graph (24 nodes) to /dev/null"))
        }
        try Self.explain(["--dot", "/dev/stderr"]) { _, run throws in
            #expect(run.status == 0, "\(run.standardError)")
            Self.expectDOTAlone(run.standardError)
            #expect(run.standardOutput.contains("Wrote the computation graph (24 nodes) to /dev/stderr"))
        }
    }

    @Test("a FIFO with a reader gets the graph; one without a reader is refused before the work")
    func fifos() throws {
        try withTemporaryFolder { folder in
            let fifo = folder + "/graph.dot"
            #expect(mkfifo(fifo, 0o644) == 0)
            // No reader: refused at once (`--data` names no data set, so the refusal came first).
            let refused = try runBackprop(["explain", "--dot", fifo, "--data", folder + "/no-data"])
            #expect(!refused.crashed && refused.status == 1)
            #expect(refused.standardOutput.isEmpty)
            #expect(
                refused.standardError
                    == "Error: --dot \(fifo): is a FIFO that no process reads; start its reader first (writing would "
                    + "wait for one)\n")
            // A reader: this test, which reads what arrives once the command has run (the graph of
            // the small model, a few KiB, fits in the pipe's buffer).
            let reader = open(fifo, O_RDONLY | O_NONBLOCK)
            try #require(reader >= 0)
            defer { close(reader) }
            try writeRandomDataset(in: folder, seed: 7)
            let run = try runBackprop(["explain", "--dot", fifo, "--data", folder])
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardOutput.contains("Wrote the computation graph (24 nodes) to \(fifo)"))
            var received: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
                if count <= 0 { break }
                received += chunk.prefix(count)
            }
            Self.expectDOTAlone(String(decoding: received, as: UTF8.self))
        }
    }

    @Test("a device that cannot be written is named with the reason; two outputs on standard output are refused")
    func outputsThatCannotBeWritten() throws {
        try Self.explain(["--dot", "/dev/full"]) { _, run throws in
            #expect(run.status == 1)
            #expect(run.standardError == "Error: --dot /dev/full: cannot write: no space left on device\n")
        }
        try Self.explain(["--html", "-", "--dot", "/dev/stdout"]) { _, run throws in
            #expect(run.status != 0)
            #expect(run.standardOutput.isEmpty)
            #expect(
                run.standardError.hasPrefix(
                    "Error: --html - and --dot /dev/stdout: both write to standard output; expected at most one there"))
        }
        // A name of another kind is still refused for a file, not for a stream.
        try Self.explain(["--dot", "{dir}/graph.txt"]) { _, run throws in
            #expect(run.status != 0)
            #expect(run.standardError.contains("--dot "), "\(run.standardError)")
            #expect(run.standardError.contains("/graph.txt: expected a file name ending in .dot or .gv"))
        }
    }

    @Test("a regular file is still replaced atomically: whole, through a link, no temporary file left")
    func regularFilesAreStillWrittenAtomically() throws {
        try Self.explain(["--dot", "{dir}/graph.dot", "--html", "{dir}/page.html"]) { folder, run throws in
            #expect(run.status == 0, "\(run.standardError)")
            #expect(run.standardOutput.contains("Parameter gradients set"))
            #expect(run.standardOutput.contains("Wrote the computation graph (24 nodes) to \(folder)/graph.dot"))
            Self.expectDOTAlone(try String(contentsOfFile: folder + "/graph.dot", encoding: .utf8))
            #expect(try String(contentsOfFile: folder + "/page.html", encoding: .utf8).hasPrefix("<!DOCTYPE html>"))
            #expect(try Self.otherFiles(in: folder) == ["graph.dot", "page.html"])
        }
        // An existing file is replaced by a new one (a rename), not written in place.
        try withTemporaryFolder { folder in
            try writeRandomDataset(in: folder, seed: 7)
            let path = folder + "/graph.dot"
            try writeBytes(Array("old".utf8), to: path)
            var before = stat()
            #expect(stat(path, &before) == 0)
            let run = try runBackprop(["explain", "--data", folder, "--dot", path])
            #expect(run.status == 0, "\(run.standardError)")
            var after = stat()
            #expect(stat(path, &after) == 0)
            #expect(after.st_ino != before.st_ino)
            Self.expectDOTAlone(try String(contentsOfFile: path, encoding: .utf8))
        }
    }

    @Test("outputs replaced atomically (train --plot, seed --save) refuse standard output before the work")
    func atomicOutputsRefuseStandardOutput() throws {
        try withTemporaryFolder { folder in
            // A link named .svg to /dev/stdout used to train, then fail naming /proc/self/fd.
            #expect(symlink("/dev/stdout", folder + "/plot.svg") == 0)
            let plot = try runBackprop(["train", "--plot", folder + "/plot.svg", "--data", folder + "/no-data"])
            #expect(!plot.crashed && plot.status != 0)
            #expect(plot.standardOutput.isEmpty)
            #expect(
                plot.standardError
                    == "Error: --plot \(folder)/plot.svg: is standard output; expected a regular file, which is "
                    + "replaced atomically\n")
            #expect(symlink("/dev/stderr", folder + "/g.safetensors") == 0)
            let save = try runBackprop(["seed", "--save", folder + "/g.safetensors"])
            #expect(!save.crashed && save.status != 0)
            #expect(save.standardError.hasPrefix("Error: --save \(folder)/g.safetensors: is standard error;"))
        }
    }

}
