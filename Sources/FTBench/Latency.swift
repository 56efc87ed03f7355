import FTEngine
import FTWire
import Histogram
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Round-trip times, in nanoseconds, with the percentiles reports need.
package struct LatencyResult: Sendable {
    package var name: String
    package var messageBytes: Int
    package var samples: UInt64
    package var p50: UInt64
    package var p90: UInt64
    package var p99: UInt64
    package var p999: UInt64
    package var max: UInt64
    /// (latency ns, fraction of samples at or below) for a CDF chart.
    package var cdf: [(UInt64, Double)]
    /// What a sample is: "round trip", or "one way through the room".
    package var measures: String

    init(name: String, messageBytes: Int, histogram h: Histogram<UInt64>, measures: String) {
        self.name = name
        self.messageBytes = messageBytes
        self.measures = measures
        samples = h.totalCount
        p50 = h.valueAtPercentile(50)
        p90 = h.valueAtPercentile(90)
        p99 = h.valueAtPercentile(99)
        p999 = h.valueAtPercentile(99.9)
        max = h.max
        cdf = [1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100].map { (h.valueAtPercentile($0), $0 / 100) }
    }

    /// For results parsed from a peer tool's own output (microseconds).
    package init(name: String, messageBytes: Int, samples: UInt64, microseconds p: [Double: Double], measures: String) {
        func ns(_ q: Double) -> UInt64 { UInt64((p[q] ?? 0) * 1000) }
        self.name = name
        self.messageBytes = messageBytes
        self.samples = samples
        self.measures = measures
        p50 = ns(50)
        p90 = ns(90)
        p99 = ns(99)
        p999 = ns(99.9)
        max = ns(100)
        cdf = p.keys.sorted().map { (ns($0), $0 / 100) }
    }
}

func newHistogram() -> Histogram<UInt64> {
    // 1 ns to 10 s with 3 significant digits: fixed memory, no allocation per sample.
    Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
}

/// Ping-pong of `messageBytes` over TCP or UDP on loopback, both ends on
/// the engine: an echo server on its own thread and ring, and a client
/// that sends, waits for the echo, and records the round trip.
package enum EnginePingPong {
    /// `spin`: each loop's idle spin (`IOBackend.idleSpinNanoseconds`),
    /// by default what ft's chat loops use.
    package static func run(udp: Bool, messageBytes: Int, seconds: Double, engine: EnginePreference,
                           spin: UInt64 = URingBackend.latencySpinNanoseconds,
                           logger: Logger) throws(IOError) -> LatencyResult {
        let port = Ports.free()
        let server = EchoServer(udp: udp, port: port, messageBytes: messageBytes, engine: engine, spin: spin, logger: logger)
        server.start()
        defer { server.stop() }
        guard Ports.waitListening(port, udp: udp) else { throw IOError(.timedOut, "start the echo server on port", "\(port)") }
        let loop = try EventLoop(backend: try Engine.makeBackend(engine, logger: logger), logger: logger)
        loop.backend.idleSpinNanoseconds = spin
        let client = PingClient(loop: loop, udp: udp, port: port, messageBytes: messageBytes, seconds: seconds)
        try client.run()
        return LatencyResult(name: "ft engine \(udp ? "udp" : "tcp")", messageBytes: messageBytes,
                             histogram: client.histogram, measures: "round trip")
    }
}

/// The server side of ping-pong: echoes every message back, on a thread.
final class EchoServer: @unchecked Sendable {
    let udp: Bool
    let port: UInt16
    let messageBytes: Int
    let engine: EnginePreference
    let logger: Logger
    private var stopFD: CInt = -1
    private var thread = pthread_t()

    let spin: UInt64

    init(udp: Bool, port: UInt16, messageBytes: Int, engine: EnginePreference, spin: UInt64, logger: Logger) {
        self.spin = spin
        self.udp = udp
        self.port = port
        self.messageBytes = messageBytes
        self.engine = engine
        self.logger = logger
        stopFD = (try? makeEventFD()) ?? -1
    }

    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { arg in
            let me = Unmanaged<EchoServer>.fromOpaque(arg!).takeRetainedValue()
            me.serve()
            return nil
        }, box)
    }

    func stop() {
        signalEventFD(stopFD)
        pthread_join(thread, nil)
        close(stopFD)
    }

    private func serve() {
        do {
            let loop = try EventLoop(backend: try Engine.makeBackend(engine, logger: logger), logger: logger)
            loop.backend.idleSpinNanoseconds = spin
            let handler = try EchoHandler(loop: loop, udp: udp, port: port, messageBytes: messageBytes, stopFD: stopFD)
            try loop.run { handler.done }
        } catch {
            logger.error("echo server: \(error)")
        }
    }
}

private final class EchoHandler: LoopHandler {
    let udp: Bool
    let messageBytes: Int
    let loop: EventLoop
    let listenFD: CInt
    var connFD: CInt = -1
    var reg: Registration!
    var done = false
    let buffer: UnsafeMutableRawBufferPointer
    let source = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    let vector = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
    let message = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
    // The reply has its own header: the next receive is queued with it, in
    // the same submission, and must not overwrite it.
    let replyTo = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    let replyVector = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
    let reply = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
    let stopBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)

    init(loop: EventLoop, udp: Bool, port: UInt16, messageBytes: Int, stopFD: CInt) throws(IOError) {
        self.loop = loop
        self.udp = udp
        self.messageBytes = messageBytes
        buffer = .allocate(byteCount: max(messageBytes, 65_536), alignment: 16)
        if udp {
            let sock = try Socket.makeUDP(family: AF_INET)
            let address = try Endpoint(host: "127.0.0.1", port: port).resolve(passive: true)[0]
            try address.withSockaddr { sa, len throws(IOError) in
                _ = try retryingEINTR("bind", address.description) { bind(sock.raw, sa, len) }
            }
            listenFD = sock.release()
        } else {
            listenFD = try Socket.listen(Endpoint(host: "127.0.0.1", port: port)).release()
        }
        loop.backend.adopt(socket: listenFD)
        reg = loop.register(self)
        loop.backend.queue(.read(fd: stopFD, buffer: stopBuffer, length: 8, offset: Op.noOffset), reg.userData(9))
        if udp { receive() } else { loop.backend.queue(.accept(fd: listenFD), reg.userData(1)) }
    }

    deinit {
        close(listenFD)
        if connFD >= 0 { close(connFD) }
        buffer.deallocate()
        source.deallocate()
        vector.deallocate()
        message.deallocate()
        replyTo.deallocate()
        replyVector.deallocate()
        reply.deallocate()
        stopBuffer.deallocate()
    }

    private func receive() {
        if udp {
            vector.pointee = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            message.pointee = msghdr()
            message.pointee.msg_name = UnsafeMutableRawPointer(source)
            message.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            message.pointee.msg_iov = vector
            message.pointee.msg_iovlen = 1
            loop.backend.queue(.recvmsg(fd: listenFD, message: message, flags: 0), reg.userData(2))
        } else {
            loop.backend.queue(.recv(fd: connFD, buffer: buffer.baseAddress!, length: messageBytes, flags: CInt(MSG_WAITALL)), reg.userData(2))
        }
    }

    func complete(_ c: Completion, on loop: EventLoop) {
        switch c.userData.tag {
        case 1:
            guard c.result >= 0 else { done = true; return }
            connFD = c.result
            loop.backend.adopt(socket: connFD)
            Socket.setInt(connFD, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
            receive()
        case 2:
            if c.result <= 0 {
                // A TCP peer that left ends the server; UDP keeps listening.
                if udp { receive() } else { done = true }
                return
            }
            // The echo, linked to the next receive: one submission, and the
            // echo posts no completion unless it fails.
            if udp {
                replyTo.pointee = source.pointee
                replyVector.pointee = iovec(iov_base: buffer.baseAddress, iov_len: Int(c.result))
                reply.pointee = msghdr()
                reply.pointee.msg_name = UnsafeMutableRawPointer(replyTo)
                reply.pointee.msg_namelen = message.pointee.msg_namelen
                reply.pointee.msg_iov = replyVector
                reply.pointee.msg_iovlen = 1
                loop.backend.queue(.sendmsg(fd: listenFD, message: reply, flags: 0), reg.userData(3), link: true, quiet: true)
            } else {
                loop.backend.queue(.send(fd: connFD, buffer: buffer.baseAddress!, length: Int(c.result), flags: CInt(MSG_WAITALL) | CInt(MSG_NOSIGNAL)),
                                   reg.userData(3), link: true, quiet: true)
            }
            receive()
        case 3:
            // Only a failed echo reports; a cancelled receive follows it.
            receive()
        case 9:
            done = true
        default:
            break
        }
    }
}

/// The measuring side: one message in flight, timed from submission to the
/// echo's completion.
private final class PingClient: LoopHandler {
    let loop: EventLoop
    let udp: Bool
    let port: UInt16
    let messageBytes: Int
    let deadline: UInt64
    var histogram = newHistogram()
    var reg: Registration!
    var fd: CInt = -1
    var sentAt: UInt64 = 0
    var finished = false
    var error: IOError?
    let out: UnsafeMutableRawBufferPointer
    let back: UnsafeMutableRawBufferPointer
    let peer: SocketAddress

    init(loop: EventLoop, udp: Bool, port: UInt16, messageBytes: Int, seconds: Double) {
        self.loop = loop
        self.udp = udp
        self.port = port
        self.messageBytes = messageBytes
        deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        out = .allocate(byteCount: messageBytes, alignment: 16)
        back = .allocate(byteCount: max(messageBytes, 65_536), alignment: 16)
        for i in 0..<messageBytes { out[i] = UInt8(truncatingIfNeeded: i) }
        peer = (try? Endpoint(host: "127.0.0.1", port: port).resolve()[0]) ?? SocketAddress(storage: sockaddr_storage(), length: 0)
    }

    deinit {
        out.deallocate()
        back.deallocate()
        if fd >= 0 { close(fd) }
    }

    func run() throws(IOError) {
        reg = loop.register(self)
        fd = udp ? try Socket.makeUDP(family: AF_INET).release() : try Socket.makeTCP(family: AF_INET).release()
        try peer.withSockaddr { sa, len throws(IOError) in
            // A connected socket (UDP too): plain send/recv on the ring.
            _ = try retryingEINTR("connect to", peer.description) { connect(fd, sa, len) }
        }
        loop.backend.adopt(socket: fd)
        if !udp { Socket.setInt(fd, CInt(IPPROTO_TCP), TCP_NODELAY, 1) }
        ping()
        try loop.run { finished }
        if let error { throw error }
    }

    private func ping() {
        sentAt = monotonicNanoseconds()
        // The send posts nothing unless it fails: one wake-up per round trip.
        loop.backend.queue(.send(fd: fd, buffer: out.baseAddress!, length: messageBytes, flags: CInt(MSG_NOSIGNAL)), reg.userData(1),
                           link: false, quiet: true)
        loop.backend.queue(.recv(fd: fd, buffer: back.baseAddress!, length: messageBytes, flags: udp ? 0 : CInt(MSG_WAITALL)), reg.userData(2))
    }

    func complete(_ c: Completion, on loop: EventLoop) {
        if c.result < 0 {
            error = IOError(result: c.result, c.userData.tag == 1 ? "send to" : "receive from", peer.description)
            finished = true
            return
        }
        guard c.userData.tag == 2 else { return }
        let now = monotonicNanoseconds()
        _ = histogram.record(now - sentAt)
        if now >= deadline { finished = true } else { ping() }
    }
}
