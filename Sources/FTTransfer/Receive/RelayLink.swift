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

    private unowned let session: PushSession
    private let loop: EventLoop
    private let offload: Offload
    /// A host name being resolved beside the offload jobs.
    private var resolving = false
    /// Which resolve is the current one: one given up on may still answer.
    private var resolveGeneration: UInt64 = 0
    private var attempt: RelayAttempt?
    /// Hosts given up on, kept until their operations completed.
    private var retired: [RelayAttempt] = []
    private(set) var state = State.connecting
    /// Hosts still to reach, the one being tried first.
    private var hops: [String]
    private let code: [UInt8]
    private let verify: Bool
    var socket: CInt { attempt?.socket.fd ?? -1 }
    private let addressStorage = UnsafeMutablePointer<sockaddr_storage>.allocate(capacity: 1)
    /// When the current host's resolve and connect began.
    private var connectStarted: UInt64 = 0
    /// The connect being cancelled for taking too long.
    private var connectCancelled = false
    private var lastActivity = monotonicNanoseconds()
    private let timeoutSeconds: Double
    /// Operations in flight, ours on every attempt.
    var inflight: Int { (attempt?.inflight ?? 0) + retired.reduce(0) { $0 + $1.inflight } + (resolving ? 1 : 0) }
    /// Frames for the downstream before it is ready; kept (as `replay`)
    /// until data starts, so a next host can be given them too.
    private var pending: [Frame] = []
    private var replay: [Frame] = []
    private var dataStarted = false
    /// The last batch the downstream answered in whole. Its data may reach
    /// that host only after this: a chain host refuses bytes for a batch it
    /// has not reviewed yet, so the session holds its own answer upstream
    /// (`PushSession.heldAnswers`) until the host behind it has answered.
    private(set) var answeredThrough: UInt32?
    /// What became of each host this link tried, and of those after them.
    private(set) var outcomes: [HopReport.Outcome] = []

    init(session: PushSession, loop: EventLoop, offload: Offload, hops: [String], code: [UInt8], verify: Bool, timeoutSeconds: Double) {
        precondition(!hops.isEmpty)
        self.session = session
        self.loop = loop
        self.offload = offload
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
    /// The session may answer `batchID` upstream: the host behind has, or
    /// there is no longer one to wait for.
    func mayAnswer(_ batchID: UInt32) -> Bool {
        final || (answeredThrough.map { $0 >= batchID } ?? false)
    }
    /// Payload may be spliced into `socket` now.
    var idle: Bool {
        guard state == .ready, let a = attempt else { return false }
        return !a.channel.writing && !a.channel.hasQueued
    }

    func start() {
        connect()
    }

    // MARK: Forwarding

    /// Sends `frame` on (after the handshake, if that is still going).
    func forward(_ frame: Frame) {
        guard !final else { return }
        if case .data = frame { dataStarted = true }
        if !dataStarted { replay.append(frame) } else { replay = [] }
        // Once the chain head went to this host, frames follow it at once;
        // before, they wait (and are what a next host would be given).
        if let a = attempt, a.headSent {
            a.channel.enqueue(frame)
            a.channel.flush()
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

    /// Relaying payload to the next host failed: say so, and stop.
    func broke(_ reason: String) {
        session.relayNote("relay to \(host) failed: \(reason)")
        fail(reason)
    }

    // MARK: Connecting

    private func connect() {
        state = .connecting
        guard let endpoint = try? Endpoint.parse(host, defaultPort: Endpoint.ftPort) else {
            nextHop(IOError(.invalidArgument, "parse the relay address", host).description)
            return
        }
        // getaddrinfo may wait on a silent resolver for many seconds: off
        // the loop and beside the ordered offload jobs, so other sessions
        // keep moving meanwhile; `tick` gives up on it in time.
        resolving = true
        resolveGeneration &+= 1
        let generation = resolveGeneration
        connectStarted = monotonicNanoseconds()
        connectCancelled = false
        let target = host
        offload.runAside({ () -> Result<SocketAddress, IOError> in
            do throws(IOError) {
                guard let a = try endpoint.resolve().first else { return .failure(IOError(.noSuchAddressOrDevice, "resolve", target)) }
                return .success(a)
            } catch {
                return .failure(error)
            }
        }) { [self] result in
            // Given up on: the session may be gone, and the link has moved on.
            guard generation == resolveGeneration, resolving else { return }
            resolving = false
            guard !final, host == target else {
                session.relayChanged()
                return
            }
            switch result {
            case .failure(let e): nextHop(e.description)
            case .success(let address): dial(address)
            }
        }
    }

    private func dial(_ address: SocketAddress) {
        if let scope = session.config.relayTo, !scope.contains(address) {
            nextHop("this host relays only to \(scope) (ft recv --relay-to), and \(host) is \(address.host)", told: true)
            return
        }
        let fd: CInt
        do {
            fd = try Socket.makeTCP(family: address.family).release()
        } catch {
            nextHop(error.description)
            return
        }
        let reg = loop.register(self)
        let handshake = SenderHandshake(purpose: .relayHop, features: verify ? [.xxh3, .poly1305Tags] : [.poly1305Tags], code: code,
                                        sessionID: AuthCode.randomBytes(16), nonce: AuthCode.randomBytes(32))
        let a = RelayAttempt(reg: reg, socket: OwnedSocket(fd), channel: FrameChannel(fd: fd, peer: host, loop: loop, reg: reg, buffered: true),
                        handshake: handshake)
        attempt = a
        addressStorage.pointee = address.storage
        loop.backend.adopt(socket: fd)
        addressStorage.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            loop.backend.queue(.connect(fd: fd, address: sa, length: address.length), a.reg.userData(OpTag(.connect)))
        }
        a.ownInflight += 1
    }

    /// The current host failed before data reached it: report it and try
    /// the next with what it missed. Until the host answered as ft, the
    /// report says only that (`told`: the reason is this host's own
    /// policy): whether the port was closed, filtered or some other
    /// service's would map the network behind this receiver for whoever
    /// pushed. The reason stays in this host's log.
    private func nextHop(_ reason: String, told: Bool = false) {
        let heard = told || (attempt?.heardFT ?? false)
        let reported = heard ? reason : "it did not answer as an ft receiver"
        if !heard { session.server.logger.info("session \(session.id): relay to \(host): \(reason)") }
        outcomes.append(.init(host: host, ok: false, message: reported))
        session.relayNote("relay to \(host) failed: \(reported)")
        retire()
        hops.removeFirst()
        answeredThrough = nil
        guard !hops.isEmpty, !dataStarted else {
            end(hops.isEmpty ? .finished : .failed)
            return
        }
        pending = replay
        connect()
    }

    private func retire() {
        guard let a = attempt else { return }
        a.socket.shutdown()
        attempt = nil
        if a.inflight > 0 { retired.append(a) } else { loop.unregister(a.reg) }
    }

    private func connected(_ a: RelayAttempt) {
        state = .handshaking
        Socket.setInt(a.socket.fd, CInt(IPPROTO_TCP), TCP_NODELAY, 1)
        // The relay's splices into this socket run on io-wq threads, which
        // block: bound them.
        Socket.setSendTimeout(a.socket.fd, seconds: Int(timeoutSeconds))
        // Nothing is written to the next hop before it opened as an ft
        // receiver (its banner): a hop aimed at another service gets nothing.
        a.channel.read()
    }

    // MARK: Completions

    func complete(_ c: Completion, on loop: EventLoop) {
        guard let a = attempt, c.userData.slot == a.reg.slot else {
            // A host given up on: its operations only wind down.
            if let i = retired.firstIndex(where: { $0.reg.slot == c.userData.slot }) {
                let r = retired[i]
                switch c.tag?.op {
                case .readPrefix, .readBody: _ = r.channel.onRead(c)
                case .sendControl: _ = r.channel.onSent(c)
                default: r.ownInflight -= 1
                }
                if r.inflight == 0 { loop.unregister(retired.remove(at: i).reg) }
            }
            session.relayChanged()
            return
        }
        lastActivity = monotonicNanoseconds()
        session.relayActivity()
        switch c.tag?.op {
        case .readPrefix, .readBody:
            guard let event = a.channel.onRead(c), !final else { break }
            switch event {
            case .frame(let f):
                receive(f, a)
            case .closed:
                lost(state == .ready
                     ? "it closed the connection mid-push (killed, or out of space?); see its own log"
                     : "it closed the connection during the handshake; is it an ft recv of this version?")
            case .failed(let e):
                lost(e.description)
            }
        case .sendControl:
            let error = a.channel.onSent(c)
            guard !final else { break }
            if let error {
                lost(error.description)
            } else {
                a.channel.flush()
                if idle { session.relayChanged() }
            }
        case .connect:
            a.ownInflight -= 1
            guard !final else { break }
            if c.result < 0 {
                let e = c.result == -ECANCELED ? IOError(.timedOut, "connect to", host) : IOError(result: c.result, "connect to", host)
                nextHop(e.description)
            } else {
                connected(a)
            }
        default:
            a.ownInflight -= 1
        }
        if final { session.relayChanged() }
    }

    /// How long a next hop may stay silent after the connect, and how long
    /// its resolve and connect may take, at most: both also stay within
    /// `silenceLimit`, or a host whose SYNs are dropped outlasts a shorter
    /// --timeout upstream and the sender gives up on the whole chain.
    static let bannerSeconds: Double = 10
    static let connectSeconds: Double = 10

    /// How long the next host may stay silent. While the session holds an
    /// answer or its `done` for it (`PushSession.waitsOnLink`), the hosts
    /// before it and the sender hear nothing either, and each gives up
    /// after the same idle timeout. So the limit shrinks with the hosts
    /// left after this one: with N of them, N/(N+1) of the timeout; the
    /// host nearest a stalled one gives up first and reports it, and that
    /// news reaches every host before it, and the sender, before they give
    /// up on the whole chain.
    private var silenceLimit: Double {
        guard session.waitsOnLink else { return timeoutSeconds }
        let after = Double(max(hops.count, 1))
        return timeoutSeconds * after / (after + 1)
    }

    private var connectOverdue: Bool {
        Double(monotonicNanoseconds() &- connectStarted) / 1e9 > min(Self.connectSeconds, silenceLimit)
    }

    /// From the session's tick: until a host's name resolved, the link has
    /// no registration of its own and the loop does not tick it.
    func checkResolve() {
        guard !final, resolving, connectOverdue else { return }
        resolving = false
        nextHop(IOError(.timedOut, "resolve", host).description)
    }

    func tick(now: UInt64, on loop: EventLoop) {
        guard !final else { return }
        if state == .connecting {
            guard let a = attempt, !connectCancelled, connectOverdue else { return }
            loop.backend.queue(.cancelFD(fd: a.socket.fd), a.reg.userData(OpTag(.shutdown)))
            a.ownInflight += 1
            connectCancelled = true
        } else if state == .handshaking, attempt?.handshake.awaitingBanner == true,
                  Double(now - lastActivity) / 1e9 > Self.bannerSeconds {
            // Something accepted and says nothing: it was sent nothing either.
            lost("it did not open as an ft receiver within \(Int(Self.bannerSeconds)) s")
        } else if state != .connecting, case let limit = silenceLimit, Double(now - lastActivity) / 1e9 > limit {
            lost("no answer for \(limit == limit.rounded() ? "\(Int(limit))" : "\((limit * 10).rounded() / 10)") s")
        }
    }

    private func receive(_ f: Frame, _ a: RelayAttempt) {
        switch f {
        case .hello, .error: a.heardFT = true
        default: break
        }
        if case .report(let r) = f {
            // Hosts further down: theirs, after ours.
            downstream = r.outcomes
            a.channel.read()
            return
        }
        if case .error(let e) = f, !e.isBanner {
            refused(e.message)
            return
        }
        guard a.established else {
            let step = a.handshake.receive(f)
            for frame in step.send { a.channel.enqueue(frame) }
            a.channel.flush()
            switch step.outcome {
            case .waiting:
                a.channel.read()
            case .established(let e):
                a.established = true
                // A chain is never encrypted; the next host's frames are tagged.
                if let keys = e.keys { a.channel.bind(keys, role: .sender, cipher: nil, tags: e.tags) }
                sendChainHead(a)
            case .failed(let why):
                switch why {
                case .receiverTakesAnyone:
                    // A host that takes anyone would relay for anyone: not in a chain.
                    refused("it accepts anyone (--no-auth); chain hosts share one code")
                case .receiverUnproven: refused("it could not prove it knows this chain's code")
                case .needCode: refused("it wants a code and this chain has none")
                case .refused(let e): refused(e.message)
                case .violation(let s): refused(s)
                case .cipher(let m): refused(m.description)  // a hop never encrypts
                }
            }
            return
        }
        switch (state, f) {
        case (.handshaking, .answer(let answer)), (.ready, .answer(let answer)):
            // A chain host offers nothing (each gets the whole stream); its
            // first whole answer says it took the push.
            a.channel.read()
            guard answer.last else { return }
            answeredThrough = answer.batchID
            state = .ready
            session.relayChanged()
        case (.ready, .batchAck):
            a.channel.read()
        case (.ready, .done(let d)):
            outcomes.append(.init(host: host, ok: true, files: d.files, bytes: d.bytes))
            outcomes += downstream
            end(.finished)
        default:
            refused("unexpected \(f.type) frame")
        }
    }

    private var downstream: [HopReport.Outcome] = []

    /// After the proofs: where the stream goes after this host, then
    /// whatever the session forwarded meanwhile (the manifest).
    private func sendChainHead(_ a: RelayAttempt) {
        a.channel.enqueue(.relay(Relay(hops: Array(hops.dropFirst()))))
        for f in pending { a.channel.enqueue(f) }
        pending = []
        a.headSent = true
        a.channel.flush()
        a.channel.read()
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
        attempt?.socket.shutdown()
        session.relayChanged()
    }

    /// The session is done with us and nothing of ours is in flight.
    func release() {
        precondition(final && inflight == 0)
        if let a = attempt { loop.unregister(a.reg) }
        attempt = nil
    }
}
