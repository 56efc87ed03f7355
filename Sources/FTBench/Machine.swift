import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// What a result was measured on, recorded in every report.
package struct MachineInfo: Sendable {
    package var cores: Int
    package var kernel: String
    package var cpuModel: String
    package var memoryBytes: UInt64
    package var hostname: String

    package static func current() -> MachineInfo {
        var u = utsname()
        uname(&u)
        func field<T>(_ v: T) -> String {
            withUnsafeBytes(of: v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        let cpu = readText("/proc/cpuinfo")?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }
            .map { $0.split(separator: ":", maxSplits: 1).last.map { String($0).trimmed } ?? "" } ?? "unknown"
        let memKiB = readText("/proc/meminfo")?.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { $0.split(separator: " ").dropFirst().first.flatMap { UInt64($0) } } ?? 0
        return MachineInfo(
            cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), kernel: field(u.release) + " " + field(u.machine),
            cpuModel: cpu, memoryBytes: memKiB * 1024, hostname: field(u.nodename))
    }
}
