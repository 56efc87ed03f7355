import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `ft chat tcp HOST:PORT`: one connection to a room (or to `nc -l`).
/// Lines typed are sent as they are; lines received are shown escaped.
/// With `retry`, a lost server is dialled again with backoff, and lines
/// typed meanwhile wait in the outbox.
package final class ChatClient: LoopHandler {
    package struct Config: Sendable {
        package var endpoint: Endpoint
        package var retry: Bool
        /// Sent as `/nick NAME` after each connect.
        package var name: String?
        package var engine: EnginePreference
        package var connectTimeoutSeconds: Double

        package init(endpoint: Endpoint, retry: Bool = false, name: String? = nil, engine: EnginePreference = .auto,
                    connectTimeoutSeconds: Double = 10) {
            self.endpoint = endpoint
            self.retry = retry
            self.name = name
            self.engine = engine
            self.connectTimeoutSeconds = connectTimeoutSeconds
        }
    }

    package enum Outcome: Sendable, Equatable {
        /// stdin ended (or /quit) and everything typed was sent.
        case finished
        /// The server went away (or never answered) and retry was off.
        case lost(String)
    }

    package let config: Config
    let loop: EventLoop
    private let console: ChatConsole
    private var reg: Registration!
    private var stdin: StdinReader!
    private var connection: LineConnection?
    private var connecting: CInt = -1
    private var addresses: [SocketAddress] = []
    private let addressStorage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    private var peer = ""
    private var pending: [UInt8] = []
    private var inputDone = false
    private var outcome: Outcome?
    private var backoff: Double = 0.25
    private var redialAt: UInt64 = 0
    private var connectDeadline: UInt64 = 0
    private var wasConnected = false

    package init(config: Config, console: ChatConsole, logger: Logger) throws(IOError) {
        self.config = config
        self.console = console
        loop = try EventLoop(backend: try Engine.makeBackend(config.engine, logger: logger), logger: logger)
        // People wait on every line: answer without a sleeping thread's wake-up.
        loop.backend.idleSpinNanoseconds = URingBackend.latencySpinNanoseconds
    }

    deinit { addressStorage.deallocate() }

    package var backend: BackendKind { loop.backend.kind }

    package func run() throws(IOError) -> Outcome {
        reg = loop.register(self)
        addresses = try config.endpoint.resolve()
        guard let first = addresses.first else { throw IOError(.noSuchAddressOrDevice, "resolve", config.endpoint.description) }
        peer = first.description
        stdin = StdinReader(loop: loop, console: console) { [unowned self] events in input(events) }
        stdin.start(loop)
        dial()
        try loop.run { outcome != nil && connection == nil && connecting < 0 }
        return outcome ?? .finished
    }

    private func dial() {
        let address = addresses[0]
        do {
            connecting = try Socket.makeTCP(family: address.family).release()
        } catch {
            lost(error.description)
            return
        }
        loop.backend.adopt(socket: connecting)
        addressStorage.pointee = address.storage
        connectDeadline = monotonicNanoseconds() + UInt64(config.connectTimeoutSeconds * 1e9)
        addressStorage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            loop.backend.queue(.connect(fd: connecting, address: sa, length: address.length), reg.userData(1))
        }
    }

    package func complete(_ c: Completion, on loop: EventLoop) {
        guard c.userData.tag == 1 else { return }
        let fd = connecting
        connecting = -1
        guard c.result == 0, outcome == nil else {
            close(fd)
            let why = c.result == -ECANCELED ? "no answer in \(Int(config.connectTimeoutSeconds)) s" : IOError.explain(.init(rawValue: -c.result))
            if outcome == nil { serverGone("connect to \(peer): \(why)") }
            return
        }
        let conn = LineConnection(fd: fd, peer: peer, loop: loop)
        conn.delegate = self
        conn.start()
        connection = conn
        wasConnected = true
        backoff = 0.25
        console.show(.connected(peer: peer))
        if let name = config.name { conn.send(Array("/nick \(name)\n".utf8)) }
        if !pending.isEmpty {
            conn.send(pending)
            pending.removeAll()
        }
        if inputDone { conn.finishWriting() }
    }

    package func tick(now: UInt64, on loop: EventLoop) {
        if connecting >= 0, now > connectDeadline {
            connectDeadline = .max
            loop.backend.queue(.cancelFD(fd: connecting), reg.userData(2))
        }
        if outcome == nil, connection == nil, connecting < 0, redialAt != 0, now >= redialAt {
            redialAt = 0
            dial()
        }
        // After stdin ended, leave once everything typed has gone out.
        if inputDone, let conn = connection, !conn.hasPendingOutput, outcome == nil {
            outcome = .finished
            conn.close("done")
        }
    }

    private func input(_ events: [InputEvent]) {
        for e in events {
            switch e {
            case .line(let bytes):
                if bytes == Array("/quit".utf8) {
                    leave()
                    return
                }
                let line = bytes + [0x0A]
                if let conn = connection, conn.isOpen {
                    conn.send(line)
                } else if pending.count + line.count <= LineConnection.outboxCap {
                    pending += line
                } else {
                    console.show(.error("not connected and over \(LineConnection.outboxCap >> 20) MiB typed; dropped a line"))
                }
            case .eof:
                inputDone = true
                // While the connect is under way its answer decides: a
                // check against a dead port must fail, not end quietly.
                if let conn = connection { conn.finishWriting() } else if connecting < 0, !config.retry { leave() }
            case .quit:
                leave()
            }
        }
    }

    private func leave() {
        inputDone = true
        outcome = outcome ?? .finished
        connection?.close("left")
        if connecting >= 0 { loop.backend.queue(.cancelFD(fd: connecting), reg.userData(2)) }
    }

    private func serverGone(_ why: String) {
        if config.retry, !inputDone || !pending.isEmpty {
            console.show(.notice("\(why); retrying in \(ByteCount.fixed(backoff, 2)) s"))
            redialAt = monotonicNanoseconds() + UInt64(backoff * 1e9)
            backoff = min(backoff * 2, 8)
        } else {
            lost(why)
        }
    }

    private func lost(_ why: String) {
        outcome = outcome ?? .lost(why)
    }
}

extension ChatClient: LineConnectionDelegate {
    func connection(_ c: LineConnection, received item: LineBuffer.Item) {
        switch item {
        case .line(let b): console.show(.message(from: c.peer, text: ChatText(b)))
        case .truncated(let b): console.show(.message(from: c.peer, text: ChatText(b, truncated: true)))
        }
    }

    func connectionClosed(_ c: LineConnection, reason: String) {
        connection = nil
        if outcome != nil { return }
        if inputDone, pending.isEmpty, !c.hasPendingOutput {
            // We had said all we had to say; the server closing is the end.
            outcome = .finished
            return
        }
        console.show(.disconnected(peer: c.peer, reason: "the server " + reason))
        serverGone("\(c.peer) went away")
    }
}
