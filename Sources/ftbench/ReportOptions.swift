import ArgumentParser
import FTBench
import FTEngine
import FTFrontEnd
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

extension EnginePreference: ExpressibleByArgument {}

/// Where results go, for every subcommand.
struct ReportOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Write results as JSON (schema: docs/ftbench-json.md).", valueName: "file"))
    var json: String?

    @Option(help: ArgumentHelp("Write a self-contained SVG chart.", valueName: "file"))
    var svg: String?

    @Option(help: "I/O engine for ft: auto, io_uring or poll.")
    var engine: EnginePreference = .auto

    @Option(help: "Give up on a run after this many seconds (the table marks it).")
    var timeout: Double = 120

    func validateCommon() throws {
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func write(_ report: BenchReport) throws {
        Console.stdout.write(report.text)
        if let json { try save(report.json + "\n", to: json) }
        if let svg { try save(Chart.svg(report), to: svg) }
    }

    private func save(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw BenchFailure(message: "cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard n == bytes.count else { throw BenchFailure(message: "cannot write \(path): \(String(cString: strerror(errno)))") }
        Console.stderr.line("ftbench: wrote \(path)")
    }
}

/// The ft binary beside ftbench (or FTBENCH_FT).
func ftBinary() throws -> String {
    if let env = getenv("FTBENCH_FT") { return String(cString: env) }
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { throw BenchFailure(message: "cannot find my own path to locate ft") }
    let me = String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let ft = me.split(separator: "/").dropLast().joined(separator: "/") + "/ft"
    guard access("/" + ft, X_OK) == 0 else { throw BenchFailure(message: "no ft next to ftbench at /\(ft); build it (swift build) or set FTBENCH_FT") }
    return "/" + ft
}

/// A scratch directory, removed unless the user named it.
func workDirectory(_ given: String?) throws -> (String, Bool) {
    if let given {
        mkdir(given, 0o755)
        return (given, false)
    }
    var template = Array("/tmp/ftbench.XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { throw BenchFailure(message: "cannot create a scratch directory in /tmp") }
    return (String(cString: p), true)
}

/// Where tree workloads write: the directory given, or a new one in
/// /dev/shm (tmpfs), or in the scratch directory if there is no /dev/shm.
/// Returns nil when no tree workload runs, and whether it was made here.
func treeOutputDirectory(_ given: String?, needed: Bool) throws -> (String?, Bool) {
    guard needed else { return (nil, false) }
    if let given {
        mkdir(given, 0o755)
        return (given, false)
    }
    var template = Array("/dev/shm/ftbench-trees.XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { return (nil, false) }
    return (String(cString: p), true)
}

/// The working directory, for relative paths given on the command line.
enum FileManagerless {
    static func cwd() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buf, buf.count) != nil else { return "." }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Prints progress on stderr at most once a second.
final class Throttle {
    private var last: UInt64 = 0
    func say(_ s: String) {
        let now = monotonicNanoseconds()
        guard now - last >= 1_000_000_000 else { return }
        last = now
        Console.stderr.line(s)
    }
}

func benchLogger() -> Logger {
    var l = Logger(label: "ftbench") { _ in CLILogHandler(program: "ftbench") }
    l.logLevel = .warning
    return l
}

/// Comma lists: "sendfile,splice" or "64K,1M".
func list(_ text: String) -> [String] {
    text.split(separator: ",").map { String($0).trimmed }.filter { !$0.isEmpty }
}
