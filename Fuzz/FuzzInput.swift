// Support shared by the fuzz targets: the readers take paths, so each input goes to a file. Built by
// Scripts/fuzz.sh into the module BackpropData with each target.

import Foundation

enum FuzzInput {
    /// A file in a RAM-backed folder when there is one, private to this process.
    static func path(for target: String) -> String {
        var isFolder: ObjCBool = false
        let shm = FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isFolder) && isFolder.boolValue
        let folder = shm ? "/dev/shm" : NSTemporaryDirectory()
        return folder + "/backprop-fuzz-\(target)-\(getpid())"
    }

    /// Replaces the file's content with the input's bytes (not atomically: speed matters here).
    static func write(_ data: UnsafePointer<UInt8>, _ size: Int, to path: String) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        precondition(descriptor >= 0, "fuzz: cannot open \(path): \(String(cString: strerror(errno)))")
        var written = 0
        while written < size {
            let result = Foundation.write(descriptor, data + written, size - written)
            precondition(result > 0, "fuzz: cannot write \(path)")
            written += result
        }
        close(descriptor)
    }
}
