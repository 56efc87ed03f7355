import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `ft chat udp --bind [ADDR:]PORT --peer HOST:PORT`: each line typed is one
/// datagram to the peer (with its newline, as `nc -u` sends them); each
/// datagram received is shown line by line, with its source when it is not
/// the peer. The socket is bound to exactly the address given.
package final class UDPChat: LoopHandler {
    package struct Config: Sendable {
        package var bind: Endpoint
        package var peer: Endpoint
        package var engine: EnginePreference

        package init(bind: Endpoint, peer: Endpoint, engine: EnginePreference = .auto) {
            self.bind = bind
            self.peer = peer
            self.engine = engine
        }
    }

    /// Largest line sent as one datagram; longer lines are cut, with a notice.
    package static let maxDatagram = 65_000

    package let config: Config
    package let boundAddress: SocketAddress
    package let peerAddress: SocketAddress
    let loop: EventLoop
    private let fd: CInt
    private let console: ChatConsole
    private var reg: Registration!
    private var stdin: StdinReader!

    // Receive side: one datagram buffer and its msghdr, allocated once.
    private let inBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)
    private let inSource = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    private let inVector = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
    private let inMessage = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
    // Send side: a queue of datagrams, one sendmsg in flight.
    private var queue: [[UInt8]] = []
    private var sending: [UInt8] = []
    private let outBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 16)
    private let outPeer = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    private let outVector = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
    private let outMessage = UnsafeMutablePointer<msghdr>.allocate(capacity: 1)
    private var inflightSend = false
    private var inputDone = false
    private var done = false

    package init(config: Config, console: ChatConsole, logger: Logger) throws(IOError) {
        self.config = config
        self.console = console
        guard let peer = try config.peer.resolve().first else {
            throw IOError(.noSuchAddressOrDevice, "resolve", config.peer.description)
        }
        peerAddress = peer
        // With only a port, bind every interface of the peer's family; with
        // an address, exactly that address.
        let bindHost = config.bind.host ?? (peer.family == AF_INET6 ? "::" : "0.0.0.0")
        guard let local = try Endpoint(host: bindHost, port: config.bind.port).resolve(passive: true)
            .first(where: { $0.family == peer.family }) else {
            throw IOError(.addressFamilyNotSupported, "bind to", "\(config.bind) (it is not the same family as the peer \(peer))")
        }
        let sock = try Socket.makeUDP(family: local.family)
        try local.withSockaddr { sa, len throws(IOError) in
            _ = try retryingEINTR("bind to", local.description) { bind(sock.raw, sa, len) }
        }
        boundAddress = try Socket.localAddress(sock.raw)
        fd = sock.release()
        loop = try EventLoop(backend: try Engine.makeBackend(config.engine, logger: logger), logger: logger)
        // People wait on every line: answer without a sleeping thread's wake-up.
        loop.backend.idleSpinNanoseconds = URingBackend.latencySpinNanoseconds
        loop.backend.adopt(socket: fd)
    }

    deinit {
        close(fd)
        for b in [inBuffer, outBuffer] { b.deallocate() }
        inSource.deallocate()
        inVector.deallocate()
        inMessage.deallocate()
        outPeer.deallocate()
        outVector.deallocate()
        outMessage.deallocate()
    }

    package var backend: BackendKind { loop.backend.kind }

    package func run() throws(IOError) {
        reg = loop.register(self)
        stdin = StdinReader(loop: loop, console: console) { [unowned self] events in input(events) }
        stdin.start(loop)
        receive()
        try loop.run { done }
    }

    private func receive() {
        inVector.pointee = iovec(iov_base: inBuffer.baseAddress, iov_len: inBuffer.count)
        inMessage.pointee = msghdr()
        inMessage.pointee.msg_name = UnsafeMutableRawPointer(inSource)
        inMessage.pointee.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        inMessage.pointee.msg_iov = inVector
        inMessage.pointee.msg_iovlen = 1
        loop.backend.queue(.recvmsg(fd: fd, message: inMessage, flags: 0), reg.userData(1))
    }

    private func input(_ events: [InputEvent]) {
        for e in events {
            switch e {
            case .line(var bytes):
                if bytes == Array("/quit".utf8) {
                    finish()
                    return
                }
                if bytes.count + 1 > Self.maxDatagram {
                    bytes = Array(bytes[..<UTF8Scan.boundary(in: bytes, end: Self.maxDatagram - 1)])
                    console.show(.notice("line cut to \(bytes.count) bytes to fit one datagram"))
                }
                queue.append(bytes + [0x0A])
                sendNext()
            case .eof:
                inputDone = true
                if !inflightSend && queue.isEmpty { finish() }
            case .quit:
                finish()
            }
        }
    }

    private func sendNext() {
        guard !inflightSend, !queue.isEmpty else { return }
        sending = queue.removeFirst()
        outBuffer.copyBytes(from: sending)
        outPeer.pointee = peerAddress.storage
        outVector.pointee = iovec(iov_base: outBuffer.baseAddress, iov_len: sending.count)
        outMessage.pointee = msghdr()
        outMessage.pointee.msg_name = UnsafeMutableRawPointer(outPeer)
        outMessage.pointee.msg_namelen = peerAddress.length
        outMessage.pointee.msg_iov = outVector
        outMessage.pointee.msg_iovlen = 1
        inflightSend = true
        loop.backend.queue(.sendmsg(fd: fd, message: outMessage, flags: 0), reg.userData(2))
    }

    package func complete(_ c: Completion, on loop: EventLoop) {
        switch c.userData.tag {
        case 1:
            if c.result >= 0 {
                delivered(Int(c.result))
            } else if c.result != -ECANCELED {
                // ICMP port unreachable from an earlier send shows up here.
                console.show(.error("receive on \(boundAddress): \(IOError.explain(.init(rawValue: -c.result)))"))
            }
            if !done { receive() }
        case 2:
            inflightSend = false
            if c.result < 0 {
                console.show(.error("send to \(peerAddress): \(IOError.explain(.init(rawValue: -c.result)))"))
            }
            sendNext()
            if inputDone, queue.isEmpty, !inflightSend { finish() }
        default:
            break
        }
    }

    private func delivered(_ n: Int) {
        let source = SocketAddress(storage: inSource.pointee, length: inMessage.pointee.msg_namelen)
        let fromPeer = source.description == peerAddress.description
        var lines = LineBuffer(cap: 65_536)
        var items = lines.append(UnsafeRawBufferPointer(start: inBuffer.baseAddress, count: n))
        if let last = lines.finish() { items.append(last) }
        for item in items {
            guard case .line(let bytes) = item else { continue }
            let text = ChatText(bytes)
            console.show(fromPeer ? .message(from: source.description, text: text) : .stranger(from: source.description, text: text))
        }
    }

    private func finish() {
        done = true
        loop.stop()
    }
}
