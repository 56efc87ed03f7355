import Foundation
import Testing
import FTWire

/// The directory holding the built products (ft, ftbench), next to this
/// test bundle.
let productsDirectory: String = {
    let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // swift test may run .../debug/ftPackageTests.xctest as a directory bundle.
    if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
    return dir.path
}()

let ftPath = productsDirectory + "/ft"

struct Finished {
    var status: Int32
    var stdoutBytes: [UInt8]
    var stdout: String { String(decoding: stdoutBytes, as: UTF8.self) }
    var stderr: String
    var stdoutLines: [String] { stdout.split(separator: "\n").map(String.init) }
}

/// A child process with its output captured; killed if a test forgets it.
final class Child: @unchecked Sendable {
    let process = Process()
    private let out = Pipe()
    private let err = Pipe()
    private let input = Pipe()
    private var outData = Data()
    private var errData = Data()
    private let lock = NSLock()
    private let outDone = DispatchSemaphore(value: 0)
    private let errDone = DispatchSemaphore(value: 0)

    init(_ executable: String, _ args: [String], environment: [String: String] = [:], stdinFile: String? = nil) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = out
        process.standardError = err
        if let stdinFile {
            process.standardInput = FileHandle(forReadingAtPath: stdinFile)
        } else {
            process.standardInput = input
        }
        try process.run()
        Thread { [self] in
            while true {
                let d = out.fileHandleForReading.availableData
                if d.isEmpty { break }
                lock.withLock { outData.append(d) }
            }
            outDone.signal()
        }.start()
        Thread { [self] in
            while true {
                let d = err.fileHandleForReading.availableData
                if d.isEmpty { break }
                lock.withLock { errData.append(d) }
            }
            errDone.signal()
        }.start()
    }

    deinit { if process.isRunning { process.terminate() } }

    var pid: Int32 { process.processIdentifier }

    func write(_ bytes: [UInt8]) { input.fileHandleForWriting.write(Data(bytes)) }
    func closeInput() { try? input.fileHandleForWriting.close() }

    var stdoutSoFar: String { lock.withLock { String(decoding: outData, as: UTF8.self) } }
    var stderrSoFar: String { lock.withLock { String(decoding: errData, as: UTF8.self) } }

    /// Waits until stdout holds a line containing `text`, up to `seconds`.
    func waitForOutput(_ text: String, seconds: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if stdoutSoFar.contains(text) || stderrSoFar.contains(text) { return true }
            if !process.isRunning { return stdoutSoFar.contains(text) || stderrSoFar.contains(text) }
            usleep(10_000)
        }
        return false
    }

    /// Waits for exit (killing the child after `seconds`).
    func wait(seconds: Double = 60) -> Finished {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            Issue.record("\(process.executableURL!.lastPathComponent) \(process.arguments!.joined(separator: " ")) did not exit within \(seconds) s")
            process.terminate()
        }
        process.waitUntilExit()
        _ = outDone.wait(timeout: .now() + 5)
        _ = errDone.wait(timeout: .now() + 5)
        return Finished(status: process.terminationStatus, stdoutBytes: lock.withLock { [UInt8](outData) }, stderr: stderrSoFar)
    }

    func kill(_ signal: Int32 = SIGKILL) { Foundation.kill(process.processIdentifier, signal) }
}

/// Runs a command to completion.
func run(_ executable: String, _ args: [String], environment: [String: String] = [:], stdinFile: String? = nil, seconds: Double = 120) throws -> Finished {
    try Child(executable, args, environment: environment, stdinFile: stdinFile).wait(seconds: seconds)
}

/// `ft recv --json` on a free loopback port; `port` comes from its ready event.
final class FTReceiver {
    let child: Child
    let port: UInt16

    init(dir: String, extra: [String] = [], environment: [String: String] = [:]) throws {
        child = try Child(ftPath, ["recv", "--listen", "127.0.0.1:0", "--dir", dir, "--json"] + extra, environment: environment)
        guard child.waitForOutput("\"event\":\"ready\"") else {
            let f = child.wait(seconds: 5)
            throw TestFailure("ft recv did not get ready: \(f.stderr) \(f.stdout)")
        }
        let all = child.stdoutSoFar + "\n" + child.stderrSoFar
        let line = all.split(separator: "\n").first { $0.contains("\"ready\"") }!
        let listen = line.components(separatedBy: "\"listen\":\"")[1].components(separatedBy: "\"")[0]
        port = UInt16(listen.split(separator: ":").last!)!
    }

    var address: String { "127.0.0.1:\(port)" }

    func stop() -> Finished {
        child.kill(SIGINT)
        return child.wait(seconds: 20)
    }

    /// Parsed NDJSON events so far.
    var events: [[String: Any]] {
        child.stdoutSoFar.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

// MARK: Files

struct TempDir {
    let path: String

    init(_ tag: String = "ftcli") {
        var template = Array("/tmp/\(tag)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("mkdtemp failed") }
        path = String(cString: p)
    }

    @discardableResult
    func sub(_ name: String) -> String {
        let p = path + "/" + name
        try? FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        return p
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

func patternBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    var x = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        x ^= x << 13
        x ^= x >> 7
        x ^= x << 17
        var v = x
        for _ in 0..<8 where i < count {
            out[i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
            i += 1
        }
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

func readFile(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { [UInt8]($0) }
}

/// Every path under `dir`, relative, sorted (hidden files included).
func listTree(_ dir: String) -> [String] {
    guard let e = FileManager.default.enumerator(atPath: dir) else { return [] }
    return (e.allObjects as! [String]).sorted()
}


/// Byte equality without handing megabytes to the test library, which
/// would print and diff them: reports sizes and the first difference.
func expectSame(_ a: [UInt8]?, _ b: [UInt8]?, _ what: String = "bytes", sourceLocation: SourceLocation = #_sourceLocation) {
    guard a != b else { return }
    guard let a, let b else {
        Issue.record("\(what): one side is missing (\(a?.count ?? -1) vs \(b?.count ?? -1) bytes)", sourceLocation: sourceLocation)
        return
    }
    let first = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
    Issue.record("\(what): \(a.count) vs \(b.count) bytes, first difference at byte \(first)", sourceLocation: sourceLocation)
}
