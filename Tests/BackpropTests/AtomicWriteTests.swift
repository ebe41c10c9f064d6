import Foundation
import Testing

@testable import Backprop

@Test func atomicWriteCreatesAndReplacesAFileLeavingNoTemporaryFiles() throws {
    try withTemporaryFolder { folder in
        let path = folder + "/report.html"
        try writeAtomically([1, 2, 3], to: path)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) == [1, 2, 3])
        try writeAtomically(Data("replaced".utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "replaced")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["report.html"])
    }
}

@Test func atomicWriteNamesAMissingFolder() {
    expectDataError(containing: ["/no/such/folder/model.safetensors", "folder '/no/such/folder' does not exist"]) {
        try writeAtomically([1], to: "/no/such/folder/model.safetensors")
    }
}

@Test func atomicWriteRefusesToReplaceAFolder() throws {
    try withTemporaryFolder { folder in
        try FileManager.default.createDirectory(atPath: folder + "/taken", withIntermediateDirectories: false)
        expectDataError(containing: [folder + "/taken", "cannot replace the file"]) {
            try writeAtomically([1], to: folder + "/taken")
        }
        expectDataError(containing: ["names a folder, not a file"]) {
            try writeAtomically([1], to: folder + "/")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["taken"])
    }
}

@Test(.enabled(if: geteuid() != 0, "root may write into read-only folders"))
func atomicWriteNamesAFolderThatIsNotWritable() throws {
    try withTemporaryFolder { folder in
        let locked = folder + "/locked"
        try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: false)
        chmod(locked, 0o555)
        defer { chmod(locked, 0o755) }
        expectDataError(containing: [locked + "/out.svg", "is not writable"]) {
            try writeAtomically([1], to: locked + "/out.svg")
        }
    }
}
