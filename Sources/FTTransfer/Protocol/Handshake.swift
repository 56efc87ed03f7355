import FTWire

/// The opening of a connection from the sending side, with no I/O: a push's
/// own connection, an extra data stream (`-P`), and a chain host's hop to
/// the next host all start here.
///
///     receiver → banner (on accept, before reading anything)
///     sender → hello(features, session id, nonce)
///     receiver → hello(features, nonce)
///     (receiver asks for the code) sender → auth(proof); receiver → auth(proof)
///
/// A data stream's receiver does not answer the proof: the push it joins
/// already proved both sides, and an error is the only reply it may send.
///
/// The sender writes nothing before the banner: whatever answers at an
/// address that is not an ft receiver (a closed port, another service, a
/// chain host's next hop that someone aimed elsewhere) never gets a byte.
package struct SenderHandshake: Sendable {
    package enum Purpose: Sendable, Equatable {
        /// A push of its own.
        case push
        /// An extra data stream of the push named by the session id.
        case dataStream
        /// A chain host's connection to the next host: it must take a code.
        case relayHop
    }

    package enum Failure: Error, Equatable, Sendable {
        /// The receiver wants the code and this side has none.
        case needCode
        /// The receiver's proof does not match our code.
        case receiverUnproven
        /// The receiver takes anyone, but this connection needs a code
        /// (for `--encrypt`'s keys, or to be a chain hop).
        case receiverTakesAnyone
        /// The receiver said no, and why.
        case refused(ErrorFrame)
        /// The receiver chose a cipher this side did not offer.
        case cipher(CipherMismatch)
        /// The receiver broke the protocol.
        case violation(String)
    }

    package struct Established: Equatable, Sendable {
        package var version: UInt16
        package var receiverFeatures: Features
        /// The session's keys, once both sides proved the code: they seal
        /// (`--encrypt`) or tag every frame from here on.
        package var keys: SessionKeys?
        /// What seals the session (`--encrypt`), as the receiver chose it.
        package var cipher: Cipher?
        /// The receiver takes anyone, although we hold a code.
        package var unauthenticated: Bool

        /// How frames are tagged when they are not sealed.
        package var tags: SessionMAC.Algorithm { .agreed(receiverHello: receiverFeatures) }
    }

    package enum Outcome: Equatable, Sendable {
        case waiting
        case established(Established)
        case failed(Failure)
    }

    /// Frames to send now, and where the handshake stands.
    package struct Step: Equatable, Sendable {
        package var send: [Frame] = []
        package var outcome: Outcome
    }

    private enum State: Sendable {
        case awaitingBanner
        case awaitingHello
        case awaitingProof(version: UInt16, features: Features, keys: SessionKeys, cipher: Cipher?)
        case over
    }

    package let purpose: Purpose
    package let features: Features
    let code: [UInt8]?
    let sessionID: [UInt8]
    let nonce: [UInt8]
    private var state = State.awaitingBanner

    package init(purpose: Purpose, features: Features, code: [UInt8]?, sessionID: [UInt8], nonce: [UInt8]) {
        self.purpose = purpose
        self.features = features
        self.code = code
        self.sessionID = sessionID
        self.nonce = nonce
    }

    /// What a peer that never sent its banner may be, for messages.
    package static var notOpened: String {
        "it is not one, or an ft older than protocol v\(ProtocolVersion.min), which waits for the sender to speak first (upgrade ft there); nothing was sent to it"
    }

    /// This side's hello, sent once the receiver's banner came.
    package var hello: Frame { .hello(Hello(role: .sender, features: features, sessionID: sessionID, nonce: nonce)) }

    package mutating func receive(_ frame: Frame) -> Step {
        if case .error(let e) = frame, e.isBanner {
            guard case .awaitingBanner = state else { return fail(.violation("a second banner while \(waitingFor)")) }
            state = .awaitingHello
            return Step(send: [hello], outcome: .waiting)
        }
        if case .error(let e) = frame { return fail(.refused(e)) }
        switch (state, frame) {
        case (.awaitingHello, .hello(let h)):
            guard h.role == .receiver else { return fail(.violation("the peer is not a receiver")) }
            let version: UInt16
            switch ProtocolVersion.negotiate(peerMin: h.minVersion, peerMax: h.maxVersion) {
            case .failure(let m): return fail(.refused(ErrorFrame(.version, m.description)))
            case .success(let v): version = v
            }
            guard h.features.contains(.auth) else {
                if purpose == .relayHop || features.contains(.encrypt) { return fail(.receiverTakesAnyone) }
                return done(Established(version: version, receiverFeatures: h.features, keys: nil, cipher: nil,
                                        unauthenticated: code != nil))
            }
            var cipher: Cipher?
            if features.contains(.encrypt), purpose != .dataStream {
                guard h.features.contains(.encrypt) else { return fail(.violation("the receiver did not agree to seal the push")) }
                switch Cipher.chosen(by: h.features, offered: Cipher.offered(by: features)) {
                case .success(let c): cipher = c
                case .failure(let m): return fail(.cipher(m))
                }
            }
            guard let code else { return fail(.needCode) }
            let keys = SessionKeys(code: code, sessionID: sessionID, senderNonce: nonce, receiverNonce: h.nonce)
            let proof = Frame.auth(keys.proof(.sender))
            if purpose == .dataStream {
                state = .over
                return Step(send: [proof], outcome: .established(
                    Established(version: version, receiverFeatures: h.features, keys: keys, cipher: nil, unauthenticated: false)))
            }
            state = .awaitingProof(version: version, features: h.features, keys: keys, cipher: cipher)
            return Step(send: [proof], outcome: .waiting)
        case (.awaitingProof(let version, let receiverFeatures, let keys, let cipher), .auth(let proof)):
            guard AuthCode.matches(proof, keys.proof(.receiver)) else { return fail(.receiverUnproven) }
            return done(Established(version: version, receiverFeatures: receiverFeatures, keys: keys, cipher: cipher,
                                    unauthenticated: false))
        default:
            return fail(.violation("unexpected \(frame.type) frame while \(waitingFor)"))
        }
    }

    /// Nothing has come from the receiver yet that looked like ft.
    package var awaitingHello: Bool {
        switch state {
        case .awaitingBanner, .awaitingHello: return true
        case .awaitingProof, .over: return false
        }
    }

    /// Not even the receiver's banner has come: the peer has said nothing
    /// that looks like ft, and this side has written nothing.
    package var awaitingBanner: Bool {
        if case .awaitingBanner = state { return true }
        return false
    }

    private var waitingFor: String {
        switch state {
        case .awaitingBanner: return "waiting for the receiver to open the connection"
        case .awaitingHello: return "waiting for the receiver's hello"
        case .awaitingProof: return "waiting for the receiver's proof of the code"
        case .over: return "the handshake is over"
        }
    }

    private mutating func done(_ e: Established) -> Step {
        state = .over
        return Step(outcome: .established(e))
    }

    private mutating func fail(_ f: Failure) -> Step {
        state = .over
        return Step(outcome: .failed(f))
    }
}

/// The opening of a connection on the receiving side, with no I/O: the
/// hello's version and features, the admission rules that depend only on
/// the hello and the receiver's settings, and the code's proofs.
package struct ReceiverHandshake: Sendable {
    /// Sent on accept, before anything is read: the sender waits for it.
    package static let banner = Frame.error(.banner)

    package struct Settings: Sendable, Equatable {
        /// The one-time code senders must prove; nil takes anyone.
        package var code: [UInt8]?
        /// Refuse pushes that are not sealed (`ft recv --encrypt`).
        package var requireEncryption = false
        /// The receiver writes to stdout: one connection carries the push.
        package var toStdout = false
        /// Ciphers an encrypted push may use, the preferred first.
        package var ciphers: [Cipher]

        package init(code: [UInt8]?, requireEncryption: Bool = false, toStdout: Bool = false,
                     ciphers: [Cipher] = CipherSuite.preference) {
            self.code = code
            self.requireEncryption = requireEncryption
            self.toStdout = toStdout
            self.ciphers = ciphers
        }
    }

    package enum Established: Equatable, Sendable {
        /// A push of its own, speaking `version`, with the features agreed.
        /// `keys`, once the sender proved the code: seal (`encrypt` among
        /// the features, with the one cipher chosen) or tag every frame
        /// from here on.
        case push(version: UInt16, sender: Hello, features: Features, keys: SessionKeys?)
        /// An extra data stream of the push with this session id.
        case dataStream(sessionID: [UInt8])
    }

    package enum Outcome: Equatable, Sendable {
        case waiting
        case established(Established)
        /// Send this error and close. `wrongCode`: count it against the
        /// sender's host.
        case refused(ErrorFrame, wrongCode: Bool)
        /// The sender sent an error of its own and leaves.
        case peerFailed(ErrorFrame)
    }

    package struct Step: Equatable, Sendable {
        package var send: [Frame] = []
        package var outcome: Outcome
    }

    private enum State: Sendable {
        case awaitingHello
        case awaitingProof(version: UInt16, sender: Hello, features: Features)
        case over
    }

    package let settings: Settings
    let nonce: [UInt8]
    private var state = State.awaitingHello

    package init(settings: Settings, nonce: [UInt8]) {
        self.settings = settings
        self.nonce = nonce
    }

    /// Whether the hello has not come yet (a connection that only says
    /// nothing is a stranger's).
    package var awaitingHello: Bool {
        if case .awaitingHello = state { return true }
        return false
    }

    package mutating func receive(_ frame: Frame) -> Step {
        if case .error(let e) = frame {
            state = .over
            return Step(outcome: .peerFailed(e))
        }
        switch (state, frame) {
        case (.awaitingHello, .hello(let h)):
            return hello(h)
        case (.awaitingProof(let version, let sender, let features), .auth(let proof)):
            let keys = SessionKeys(code: settings.code!, sessionID: sender.sessionID, senderNonce: sender.nonce, receiverNonce: nonce)
            guard AuthCode.matches(proof, keys.proof(.sender)) else {
                return refuse(.auth, "wrong code: this receiver's one-time code is different (check FT_CODE or --code-file)", wrongCode: true)
            }
            state = .over
            if sender.features.contains(.dataStream) {
                // The push this stream joins already proved both sides.
                return Step(outcome: .established(.dataStream(sessionID: sender.sessionID)))
            }
            return Step(send: [.auth(keys.proof(.receiver))], outcome: .established(
                .push(version: version, sender: sender, features: features, keys: keys)))
        case (.awaitingProof, _):
            return refuse(.auth, "this receiver needs the one-time code; the sender sent a \(frame.type) frame instead of proving it knows the code (set FT_CODE or --code-file on the sender)")
        default:
            return refuse(.protocolViolation, "unexpected \(frame.type) frame before the handshake was complete")
        }
    }

    private mutating func hello(_ h: Hello) -> Step {
        guard h.role == .sender else { return refuse(.protocolViolation, "the peer is not a sender") }
        let version: UInt16
        switch ProtocolVersion.negotiate(peerMin: h.minVersion, peerMax: h.maxVersion) {
        case .failure(let m): return refuse(.version, m.description)
        case .success(let v): version = v
        }
        let isDataStream = h.features.contains(.dataStream)
        let encrypt = h.features.contains(.encrypt)
        if encrypt, settings.code == nil {
            return refuse(.refused, "--encrypt needs the one-time code to make keys, and this receiver accepts anyone (--no-auth)")
        }
        if !encrypt, !isDataStream, settings.requireEncryption {
            return refuse(.refused, "this receiver takes encrypted pushes only: run ft send with --encrypt")
        }
        var features: Features = settings.code != nil ? [.xxh3, .auth] : [.xxh3]
        if encrypt, !isDataStream {
            switch Cipher.pick(offered: Cipher.offered(by: h.features), accepted: settings.ciphers) {
            case .success(let c): features.formUnion([.encrypt, c.feature])
            case .failure(let m): return refuse(.refused, m.description)
            }
        } else if encrypt {
            features.insert(.encrypt)
        }
        if h.features.contains(.dataStreams), !isDataStream, !encrypt, !settings.toStdout { features.insert(.dataStreams) }
        if h.features.contains(.poly1305Tags), !encrypt { features.insert(.poly1305Tags) }
        var reply = Hello(role: .receiver, features: features, sessionID: h.sessionID, nonce: nonce)
        reply.minVersion = version
        reply.maxVersion = version
        let answer = Frame.hello(reply)
        if settings.code != nil {
            state = .awaitingProof(version: version, sender: h, features: features)
            return Step(send: [answer], outcome: .waiting)
        }
        state = .over
        if isDataStream { return Step(send: [answer], outcome: .established(.dataStream(sessionID: h.sessionID))) }
        return Step(send: [answer], outcome: .established(.push(version: version, sender: h, features: features, keys: nil)))
    }

    private mutating func refuse(_ code: ErrorFrame.Code, _ message: String, wrongCode: Bool = false) -> Step {
        state = .over
        return Step(outcome: .refused(ErrorFrame(code, message), wrongCode: wrongCode))
    }
}
