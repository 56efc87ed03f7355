import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

/// A chain receiver's connection to the next host: it speaks the sender's
/// side of the handshake with this receiver's own code (a chain shares one
/// code), then carries the frames the session forwards. Payload bytes do
/// not pass through here: the session splices them into `socket` itself
/// when `idle` says no control frame is on its way.
///
/// A host that cannot be reached, or refuses, before any data went to it
/// is reported failed and the next one is tried, so the chain closes
/// around it. Once data flowed, a failure ends the relay: the sender
/// reaches the rest in a later pass.
final class RelayLink: LoopHandler {
    enum State: Equatable {
        case connecting
        case handshaking
        /// Forwarding frames; the downstream accepted the manifest.
        case ready
        /// The downstream said `done`.
        case finished
        case failed
    }

    /// One connection to one host, with its own registration so that late
    /// completions of a host given up on never reach the next one's channel.
    private final class Attempt {
        let reg: Registration
        let socket: CInt
        var channel: FrameChannel!
        var inflight = 0
        init(reg: Registration, socket: CInt) {
            self.reg = reg
            self.socket = socket
        }
        deinit { close(socket) }
    }

    private unowned let session: ReceiverSession
    private let loop: EventLoop
    private var attempt: Attempt?
    /// Hosts given up on, kept until their operations completed.
    private var retired: [Attempt] = []
    private(set) var state = State.connecting
    /// Hosts still to reach, the one being tried first.
    private var hops: [String]
    private let code: [UInt8]
    private let verify: Bool
    var socket: CInt { attempt?.socket ?? -1 }
    private var channel: FrameChannel { attempt!.channel }
    private var reg: Registration { attempt!.reg }
    private let addressStorage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    private let sessionID = AuthCode.randomBytes(16)
    private let nonce = AuthCode.randomBytes(32)
    private var receiverNonce: [UInt8] = []
    private var deadline: UInt64 = 0
    private var lastActivity = monotonicNanoseconds()
    private let timeoutSeconds: Double
    /// Operations in flight, ours on every attempt.
    var inflight: Int { (attempt?.inflight ?? 0) + retired.reduce(0) { $0 + $1.inflight } }
    /// Frames for the downstream before it is ready; kept (as `replay`)
    /// until data starts, so a next host can be given them too.
    private var pending: [Frame] = []
    private var replay: [Frame] = []
    private var dataStarted = false
    /// What became of each host this link tried, and of those after them.
    private(set) var outcomes: [HopReport.Outcome] = []
    private var done: Done?

    init(session: ReceiverSession, loop: EventLoop, hops: [String], code: [UInt8], verify: Bool, timeoutSeconds: Double) {
        precondition(!hops.isEmpty)
        self.session = session
        self.loop = loop
        self.hops = hops
        self.code = code
        self.verify = verify
        self.timeoutSeconds = timeoutSeconds
    }

    deinit {
        addressStorage.deallocate()
    }

    var host: String { hops.first ?? "" }
    var final: Bool { state == .finished || state == .failed }
    /// Payload may be spliced into `socket` now.
    var idle: Bool { state == .ready && !channel.writing && !channel.hasQueued }

    func start() {
        connect()
    }

    // MARK: Forwarding

    /// Sends `frame` on (after the handshake, if that is still going).
    func forward(_ frame: Frame) {
        guard !final else { return }
        if case .data = frame { dataStarted = true }
        if !dataStarted { replay.append(frame) } else { replay = [] }
        if state == .ready {
            channel.enqueue(frame)
            flush()
        } else {
            pending.append(frame)
        }
    }

    /// The relay stops (the session failed, or a splice to `socket` did).
    func fail(_ reason: String) {
        guard !final else { return }
        outcomes.append(.init(host: host, ok: false, message: reason))
        end(.failed)
    }

    // MARK: Connecting

    private func connect() {
        state = .connecting
        let endpoint: Endpoint
        let address: SocketAddress
        let fd: CInt
        do throws(IOError) {
            guard let e = try? Endpoint.parse(host, defaultPort: 7878) else {
                throw IOError(.invalidArgument, "parse the relay address", host)
            }
            endpoint = e
            guard let a = try endpoint.resolve().first else { throw IOError(.noSuchAddressOrDevice, "resolve", host) }
            address = a
            fd = try Socket.makeTCP(family: address.family).release()
        } catch {
            nextHop("\(error)")
            return
        }
        let a = Attempt(reg: loop.register(self), socket: fd)
        attempt = a
        addressStorage.pointee = address.storage
        loop.backend.adopt(socket: fd)
        deadline = monotonicNanoseconds() + 10_000_000_000
        addressStorage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            loop.backend.queue(.connect(fd: fd, address: sa, length: address.length), a.reg.userData(Tag.connect.rawValue))
        }
        a.inflight += 1
    }

    /// The current host failed before data reached it: report it and try
    /// the next with what it missed.
    private func nextHop(_ reason: String) {
        outcomes.append(.init(host: host, ok: false, message: reason))
        session.relayNote("relay to \(host) failed: \(reason)")
        retire()
        hops.removeFirst()
        guard !hops.isEmpty, !dataStarted else {
            end(hops.isEmpty ? .finished : .failed)
            return
        }
        pending = replay
        connect()
    }

    private func retire() {
        guard let a = attempt else { return }
        _ = shutdown(a.socket, CInt(SHUT_RDWR))
        attempt = nil
        if a.inflight > 0 { retired.append(a) } else { loop.unregister(a.reg) }
    }

    private func connected() {
        state = .handshaking
        Socket.setInt(socket, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
        Socket.setSendTimeout(socket, seconds: Int(timeoutSeconds))
        attempt!.channel = FrameChannel(fd: socket, peer: host, buffered: true)
        machine = SenderMachine(entries: [], hasCode: true)
        channel.enqueue(.hello(Hello(role: .sender, features: verify ? [.xxh3] : [], sessionID: sessionID, nonce: nonce)))
        flush()
        read()
    }

    private var machine = SenderMachine(entries: [], hasCode: true)

    // MARK: Completions

    func complete(_ c: Completion, on loop: EventLoop) {
        guard let a = attempt, c.userData.slot == a.reg.slot else {
            // A host given up on: its operations only wind down.
            if let i = retired.firstIndex(where: { $0.reg.slot == c.userData.slot }) {
                retired[i].inflight -= 1
                if retired[i].inflight == 0 { loop.unregister(retired.remove(at: i).reg) }
            }
            session.relayChanged()
            return
        }
        a.inflight -= 1
        lastActivity = monotonicNanoseconds()
        session.relayActivity()
        guard let tag = Tag(rawValue: c.userData.tag), !final else {
            session.relayChanged()
            return
        }
        switch tag {
        case .connect:
            if c.result < 0 {
                let e = c.result == -ECANCELED ? IOError(.timedOut, "connect to", host) : IOError(result: c.result, "connect to", host)
                nextHop(e.description)
            } else {
                connected()
            }
        case .sendControl:
            if let e = channel.onSent(c) {
                lost(e.description)
            } else {
                flush()
                if idle { session.relayChanged() }
            }
        case .readPrefix, .readBody:
            switch channel.onRead(c, loop, reg) {
            case .pending:
                a.inflight += 1
            case .frame(let f):
                receive(f)
            case .closed:
                lost(state == .ready
                     ? "it closed the connection mid-push (killed, or out of space?); see its own log"
                     : "it closed the connection during the handshake; is it an ft recv of this version?")
            case .failed(let e):
                lost(e.description)
            }
        default:
            break
        }
    }

    func tick(now: UInt64, on loop: EventLoop) {
        guard !final else { return }
        if state == .connecting, now > deadline {
            loop.backend.queue(.cancelFD(fd: socket), reg.userData(Tag.shutdown.rawValue))
            attempt!.inflight += 1
            deadline = .max
        } else if state != .connecting, Double(now - lastActivity) / 1e9 > timeoutSeconds {
            lost("no answer for \(Int(timeoutSeconds)) s")
        }
    }

    private func receive(_ f: Frame) {
        if case .report(let r) = f {
            // Hosts further down: theirs, after ours.
            downstream = r.outcomes
            read()
            return
        }
        if state == .ready, case .fileAck = f {
            read()
            return
        }
        if state == .ready, case .done(let d) = f {
            done = d
            outcomes.append(.init(host: host, ok: true, files: d.files, bytes: d.bytes))
            outcomes += downstream
            end(.finished)
            return
        }
        switch machine.receive(f) {
        case .authenticate(let receiver):
            receiverNonce = receiver.nonce
            channel.enqueue(.auth(AuthCode.proof(code: code, role: .sender, session: sessionID,
                                                 senderNonce: nonce, receiverNonce: receiverNonce)))
            flush()
            read()
        case .checkReceiver(let proof):
            let expected = AuthCode.proof(code: code, role: .receiver, session: sessionID, senderNonce: nonce, receiverNonce: receiverNonce)
            guard AuthCode.matches(proof, expected) else {
                refused("it could not prove it knows this chain's code")
                return
            }
            _ = machine.authenticated()
            sendChainHead()
        case .sendManifest(_, let unauthenticated):
            guard !unauthenticated else {
                // A host that takes anyone would relay for anyone: not in a chain.
                refused("it accepts anyone (--no-auth); chain hosts share one code")
                return
            }
            sendChainHead()
        case .startData(let accept):
            if !accept.have.isEmpty { channel.enqueue(.resume(Resume(skips: []))) }
            state = .ready
            flush()
            read()
            session.relayChanged()
        case .peerFailed(let e):
            refused(e.message)
        case .violation(let s):
            refused(s)
        case .needCode, .acknowledged, .complete, .hopReport, .none:
            refused("unexpected \(f.type) frame")
        }
    }

    private var downstream: [HopReport.Outcome] = []

    /// After the proofs: where the stream goes after this host, then
    /// whatever the session forwarded meanwhile (the manifest).
    private func sendChainHead() {
        channel.enqueue(.relay(Relay(hops: Array(hops.dropFirst()))))
        for f in pending { channel.enqueue(f) }
        pending = []
        flush()
        read()
    }

    /// The host said no, or broke the protocol, before data reached it.
    private func refused(_ reason: String) {
        if dataStarted { lost(reason) } else { nextHop(reason) }
    }

    private func lost(_ reason: String) {
        if !dataStarted {
            nextHop(reason)
            return
        }
        session.relayNote("relay to \(host) failed: \(reason)")
        fail(reason)
    }

    private func end(_ s: State) {
        state = s
        if socket >= 0 { _ = shutdown(socket, CInt(SHUT_RDWR)) }
        session.relayChanged()
    }

    private func read() {
        guard !channel.reading else { return }
        attempt!.inflight += 1
        channel.readNext(loop, reg)
    }

    private func flush() {
        if channel.flush(loop, reg) { attempt!.inflight += 1 }
    }

    /// The session is done with us and nothing of ours is in flight.
    func release() {
        precondition(final && inflight == 0)
        if let a = attempt { loop.unregister(a.reg) }
        attempt = nil
    }
}
