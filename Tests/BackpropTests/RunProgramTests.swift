import Foundation
import Testing

/// The tests' way of running programs (`runProgram`, behind `runBackprop`): it must not hang
/// whatever the child does, or one stuck child stops the whole test run (and CI) without a word.
@Suite("Running a program from a test")
struct RunProgramTests {
    /// A child that writes 256 KiB to standard error before its standard output (four times what
    /// a pipe holds) finishes, and both streams arrive whole.
    @Test func bothPipesAreReadAtOnce() throws {
        let script = "head -c 262144 /dev/zero | tr '\\0' e >&2; head -c 262144 /dev/zero | tr '\\0' o"
        let result = try runProgram("/bin/sh", ["-c", script], timeout: 60)
        #expect(result.status == 0)
        #expect(result.standardError.utf8.count == 262_144 && result.standardError.allSatisfy { $0 == "e" })
        #expect(result.standardOutput.utf8.count == 262_144 && result.standardOutput.allSatisfy { $0 == "o" })
    }

    /// A child that outlives its timeout is killed, and the result says so.
    @Test func aChildThatDoesNotEndIsKilled() throws {
        let start = Date()
        let result = try runProgram("/bin/sh", ["-c", "echo started; exec sleep 60"], timeout: 1)
        #expect(Date().timeIntervalSince(start) < 30)
        #expect(result.crashed && result.status == SIGKILL)
        #expect(result.standardOutput == "started\n")
        #expect(result.standardError.contains("still ran after 1 s; killed"), "\(result.standardError)")
    }
}
