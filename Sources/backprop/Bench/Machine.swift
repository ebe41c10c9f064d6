import BackpropCore
import BackpropData
import BackpropExplain
import BackpropNetwork
import BackpropTraining
import Foundation

#if canImport(Accelerate)
    import Accelerate
#elseif OpenBLAS
    import CBLAS
#endif

/// What a benchmark ran on, as `BENCHMARKS.md` records it.
struct Machine: Sendable, Encodable {
    /// The processor's model name (`model name` in `/proc/cpuinfo`), or `unknown`.
    let cpu: String
    /// The cores this process may use.
    let cores: Int
    /// The BLAS library and its build (`openblas_get_config()`), or `none`.
    let blas: String
    /// Whether the skinny AVX2/FMA kernel runs on this CPU.
    let skinnyKernel: Bool
    /// The vector instructions Backprop's C kernels use here: `avx512`, `avx2` (also where
    /// `BACKPROP_NO_AVX512` is set), or `none` (portable code only).
    let kernels: String

    private enum CodingKeys: String, CodingKey {
        case cpu, cores, blas, kernels
        case skinnyKernel = "skinny_kernel"
    }

    /// The machine this process runs on.
    static var current: Machine {
        Machine(
            cpu: cpuModel(), cores: ProcessInfo.processInfo.activeProcessorCount, blas: blasDescription(),
            skinnyKernel: Tensor.skinnyKernelIsAvailable,
            kernels: Tensor.skinnyKernelIsAvailable ? Tensor.SkinnyInstructionSet.widest.rawValue : "none")
    }

    private static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown"
    }

    private static func blasDescription() -> String {
        #if canImport(Accelerate)
            return "Accelerate"
        #elseif OpenBLAS
            guard let config = openblas_get_config() else { return "OpenBLAS" }
            return String(cString: config).trimmingCharacters(in: .whitespaces)
        #else
            return "none"
        #endif
    }
}
