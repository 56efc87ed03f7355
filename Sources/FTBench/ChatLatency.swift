import FTEngine
import SystemPackage
import FTWire
import Histogram

#if canImport(Glibc)
import Glibc
#endif

/// A line's trip through an `ft chat tcp` room: client A sends `ping N`,
/// client B is timed until it reads `a: ping N` (client → room → other
/// client, two network hops like a ping-pong round trip). The room is the
/// system under test; the two clients are plain blocking sockets.
package enum ChatRoomLatency {
    package static func run(ft: String, seconds: Double, engine: EnginePreference) throws(IOError) -> LatencyResult {
        let port = Ports.free()
        // The room's stderr is kept until it listens, so a room that fails
        // to start says why instead of leaving only a timeout.
        let log = "/tmp/ftbench-room-\(getpid())-\(port).log"
        defer { unlink(log) }
        let room = try Spawned([ft, "chat", "tcp", "--listen", "127.0.0.1:\(port)", "--engine", engine.rawValue],
                               stdin: "/dev/null", stderr: log)
        defer {
            room.signal(SIGINT)
            _ = room.wait(timeoutSeconds: 5)
        }
        guard Ports.waitListening(port) else {
            let said = (readText(log) ?? "").split(separator: "\n").last.map { " (the room said: \($0))" } ?? ""
            throw IOError(.timedOut, "start the chat room on port", "\(port)\(said)")
        }
        let a = try BlockingLines(port: port)
        _ = try a.readLine { $0.hasPrefix("* you joined") }
        let b = try BlockingLines(port: port)
        _ = try b.readLine { $0.hasPrefix("* you joined") }
        try a.send("/nick a\n")
        // Let the joins and the rename settle before timing.
        _ = try b.readLine { $0.hasSuffix("is now a") }
        var h = newHistogram()
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        var n = 0
        while monotonicNanoseconds() < deadline {
            n += 1
            let t0 = monotonicNanoseconds()
            try a.send("ping \(n)\n")
            let expected = "a: ping \(n)"
            _ = try b.readLine { $0 == expected }
            _ = h.record(monotonicNanoseconds() - t0)
        }
        return LatencyResult(name: "ft chat room (tcp)", messageBytes: 7, histogram: h, measures: "one way through the room")
    }
}

/// A blocking TCP client reading lines, for timing a room from outside.
final class BlockingLines {
    let fd: CInt
    private var pending: [UInt8] = []
    private var buf = [UInt8](repeating: 0, count: 65_536)

    init(port: UInt16) throws(IOError) {
        fd = try Socket.makeTCP(family: AF_INET).release()
        let address = try Endpoint(host: "127.0.0.1", port: port).resolve()[0]
        try address.withSockaddr { sa, len throws(IOError) in
            _ = try retryingEINTR("connect to", address.description) { connect(fd, sa, len) }
        }
        Socket.setInt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ text: String) throws(IOError) {
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, CInt(MSG_NOSIGNAL)) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw IOError(Errno(rawValue: errno), "send to the room") }
            off += n
        }
    }

    /// Reads lines until one satisfies `wanted`.
    func readLine(_ wanted: (String) -> Bool) throws(IOError) -> String {
        while true {
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<nl], as: UTF8.self)
                pending.removeFirst(nl + 1)
                if wanted(line) { return line }
            }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw IOError(n == 0 ? .connectionReset : Errno(rawValue: errno), "read from the room") }
            pending += buf[..<n]
        }
    }
}
