import FTEngine
import FTWire
import SystemPackage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A benchmark participant: a child process started with posix_spawn, with
/// its resource usage collected by wait4 when it exits.
package final class Spawned {
    package let pid: pid_t
    package let command: [String]
    private var result: Exit?
    /// Highest VmHWM seen so far (see `sample`).
    private var peakKiB = 0

    package struct Exit: Sendable {
        /// Exit code, or 128 + signal.
        package var status: Int32
        package var timedOut: Bool
        package var userSeconds: Double
        package var systemSeconds: Double
        package var maxRSSKiB: Int
        package var cpuSeconds: Double { userSeconds + systemSeconds }
    }

    /// Starts `command[0]` (searched on PATH) with stdin/stdout/stderr from
    /// or to the given paths ("/dev/null" by default).
    package init(_ command: [String], stdin: String = "/dev/null", stdout: String = "/dev/null",
                stderr: String = "/dev/null", appendStdout: Bool = false) throws(IOError) {
        self.command = command
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | (appendStdout ? O_APPEND : O_TRUNC), 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attrs = posix_spawnattr_t()
        posix_spawnattr_init(&attrs)
        defer { posix_spawnattr_destroy(&attrs) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attrs, &empty)
        // Its own process group, so a whole pipeline can be killed at once.
        posix_spawnattr_setpgroup(&attrs, 0)
        posix_spawnattr_setflags(&attrs, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
        let argv = command.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawnp(&child, command[0], &actions, &attrs, argv, environ)
        guard rc == 0 else { throw IOError(Errno(rawValue: rc), "start", command[0]) }
        pid = child
    }

    deinit {
        if result == nil {
            kill(-pid, SIGKILL)
            _ = wait(timeoutSeconds: 5)
        }
    }

    /// Records the process's memory high-water mark while it is alive.
    /// ru_maxrss survives execve, so a child spawned from us starts with our
    /// own peak; its own mm's high-water mark is in /proc while it runs.
    package func sample() {
        guard result == nil else { return }
        peakKiB = max(peakKiB, Self.highWaterKiB(pid))
    }

    /// Waits for exit, sampling `others` too so none exits unobserved; after
    /// `timeoutSeconds` the process group is killed and the exit is marked
    /// as timed out.
    package func wait(timeoutSeconds: Double, sampling others: [Spawned] = []) -> Exit {
        if let result { return result }
        let deadline = monotonicNanoseconds() + UInt64(max(0, timeoutSeconds) * 1e9)
        var timedOut = false
        while true {
            sample()
            for o in others { o.sample() }
            var st: Int32 = 0
            var ru = rusage()
            let r = wait4(pid, &st, WNOHANG, &ru)
            if r == pid {
                let signal = st & 0x7F
                let exit = Exit(
                    status: signal == 0 ? (st >> 8) & 0xFF : 128 + signal, timedOut: timedOut,
                    userSeconds: Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6,
                    systemSeconds: Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6,
                    maxRSSKiB: peakKiB)
                result = exit
                return exit
            }
            if r < 0, errno != EINTR {
                let exit = Exit(status: -1, timedOut: timedOut, userSeconds: 0, systemSeconds: 0, maxRSSKiB: 0)
                result = exit
                return exit
            }
            if !timedOut, monotonicNanoseconds() > deadline {
                timedOut = true
                kill(-pid, SIGKILL)
            }
            usleep(2_000)
        }
    }

    package func signal(_ s: Int32) { kill(pid, s) }

    /// VmHWM of a live process, in KiB (0 once it is a zombie).
    static func highWaterKiB(_ pid: pid_t) -> Int {
        guard let status = readText("/proc/\(pid)/status") else { return 0 }
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }

    /// Runs `sh -c script` (for peer pipelines such as `tar c | nc`).
    package static func shell(_ script: String, stdout: String = "/dev/null", stderr: String = "/dev/null") throws(IOError) -> Spawned {
        try Spawned(["/bin/sh", "-c", script], stdout: stdout, stderr: stderr)
    }
}

/// Whether something listens on a TCP or UDP port, read from /proc without
/// connecting (a probe connection would count as a session to ft recv).
package enum Ports {
    package static func isListening(_ port: UInt16, udp: Bool = false) -> Bool {
        let files = udp ? ["/proc/net/udp", "/proc/net/udp6"] : ["/proc/net/tcp", "/proc/net/tcp6"]
        let hex = String(port, radix: 16, uppercase: true)
        let padded = String(repeating: "0", count: 4 - hex.count) + hex
        for f in files {
            guard let text = readText(f) else { continue }
            for line in text.split(separator: "\n").dropFirst() {
                let cols = line.split(separator: " ", omittingEmptySubsequences: true)
                guard cols.count > 3, cols[1].hasSuffix(":" + padded) else { continue }
                // TCP state 0A is LISTEN; an unconnected UDP socket is 07.
                if cols[3] == (udp ? "07" : "0A") { return true }
            }
        }
        return false
    }

    /// Waits until the port listens (or `seconds` pass).
    package static func waitListening(_ port: UInt16, udp: Bool = false, seconds: Double = 10) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while monotonicNanoseconds() < deadline {
            if isListening(port, udp: udp) { return true }
            usleep(5_000)
        }
        return false
    }

    /// A port that TCP and UDP can both bind right now, taken below the
    /// kernel's ephemeral range: a port from inside it can be handed to some
    /// unrelated outgoing connection between our check and the peer's bind
    /// (seen as "socat did not listen within 10 s" on a busy machine).
    /// Successive calls in one process walk the range, so concurrent callers
    /// do not pick the same port.
    package static func free() -> UInt16 {
        let range = unclaimedRange()
        let span = UInt32(range.count)
        for _ in 0..<span {
            let p = UInt16(UInt32(range.lowerBound) + cursor.add(1, ordering: .relaxed).newValue % span)
            if !isListening(p), !isListening(p, udp: true), bindable(p, type: SOCK_STREAM), bindable(p, type: SOCK_DGRAM) {
                return p
            }
        }
        fatalError("no free port in \(range)")
    }

    private static let cursor = Atomic<UInt32>(UInt32.random(in: 0..<1_000_000))

    /// Ports outside net.ipv4.ip_local_port_range (default 32768–60999).
    static func unclaimedRange() -> ClosedRange<UInt16> {
        let text = readText("/proc/sys/net/ipv4/ip_local_port_range") ?? ""
        let bounds = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        let (low, high) = bounds.count == 2 ? (bounds[0], bounds[1]) : (32_768, 60_999)
        if low - 1 >= 12_000 { return 10_000...UInt16(low - 1) }
        if high + 2_000 <= 65_535 { return UInt16(high + 1)...65_535 }
        return 20_000...40_000  // the whole space is ephemeral: no safe choice, keep the old range
    }

    /// Binds 0.0.0.0:port without SO_REUSEADDR, so a socket in TIME_WAIT or
    /// any bound socket makes it fail; nothing lingers after close.
    static func bindable(_ port: UInt16, type: __socket_type) -> Bool {
        let fd = socket(AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

func readText(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65_536)
    while out.count < limit {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        out += buf[..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// Looks a program up on PATH.
package func which(_ name: String) -> String? {
    if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
    guard let path = getenv("PATH") else { return nil }
    for dir in String(cString: path).split(separator: ":") {
        let candidate = "\(dir)/\(name)"
        if access(candidate, X_OK) == 0 { return candidate }
    }
    return nil
}
