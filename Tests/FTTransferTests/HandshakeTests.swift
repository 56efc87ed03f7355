import Testing
import FTTransfer
import FTWire

/// Both sides of the handshake, run against each other with no sockets.
@Suite struct HandshakeTests {
    let code = AuthCode.normalize("k7mq-2fxp-93rd")!
    let other = AuthCode.normalize("zzzz-zzzz-zzzz")!
    let session = [UInt8](repeating: 1, count: 16)
    let senderNonce = [UInt8](repeating: 2, count: 32)
    let receiverNonce = [UInt8](repeating: 3, count: 32)

    /// A sender that heard the receiver's banner, as every sender does first.
    func sender(_ purpose: SenderHandshake.Purpose = .push, features: Features = [.xxh3], code: [UInt8]?) -> SenderHandshake {
        var s = SenderHandshake(purpose: purpose, features: features, code: code, sessionID: session, nonce: senderNonce)
        let opened = s.receive(ReceiverHandshake.banner)
        precondition(opened.send == [s.hello] && opened.outcome == .waiting)
        return s
    }

    /// The receiver speaks first; until it has, the sender writes nothing,
    /// and takes nothing but the banner.
    @Test(arguments: [SenderHandshake.Purpose.push, .dataStream, .relayHop])
    func theSenderWritesNothingBeforeTheBanner(purpose: SenderHandshake.Purpose) {
        var s = SenderHandshake(purpose: purpose, features: [.xxh3], code: code, sessionID: session, nonce: senderNonce)
        #expect(s.awaitingBanner && s.awaitingHello)
        let step = s.receive(ReceiverHandshake.banner)
        #expect(step.send == [s.hello] && step.outcome == .waiting && !s.awaitingBanner)
        guard case .failed(.violation(let why)) = s.receive(ReceiverHandshake.banner).outcome else {
            Issue.record("a second banner was taken")
            return
        }
        #expect(why.contains("second banner"))

        // A hello before the banner (a receiver of protocol 2) is not taken.
        var early = SenderHandshake(purpose: purpose, features: [.xxh3], code: code, sessionID: session, nonce: senderNonce)
        let hello = early.receive(.hello(Hello(role: .receiver, features: [.xxh3, .auth], nonce: receiverNonce)))
        guard case .failed(.violation) = hello.outcome else { Issue.record("a hello before the banner: \(hello.outcome)"); return }
        #expect(hello.send.isEmpty)
        // A real refusal before it is reported as what it is.
        var refused = SenderHandshake(purpose: purpose, features: [.xxh3], code: code, sessionID: session, nonce: senderNonce)
        #expect(refused.receive(.error(ErrorFrame(.busy, "full"))).outcome == .failed(.refused(ErrorFrame(.busy, "full"))))
    }

    /// A sender of protocol 2 speaks first and reads an error where it
    /// waited for a hello: the banner's message tells it who should upgrade.
    @Test func theBannerTellsAnOlderSenderToUpgrade() throws {
        let bytes = FrameCodec.encode(ReceiverHandshake.banner)
        let prefix = try bytes.withUnsafeBytes { try FramePrefix.decode($0) }
        #expect(prefix.type == .error)
        let frame = try bytes.withUnsafeBytes { try FrameCodec.decodeBody(prefix, UnsafeRawBufferPointer(rebasing: $0[FramePrefix.size...])) }
        guard case .error(let e) = frame else { Issue.record("\(frame)"); return }
        #expect(e.isBanner && e.message.contains("upgrade ft on the sending host") && e.message.contains("v\(ProtocolVersion.min)"))
    }

    func receiver(code: [UInt8]?, requireEncryption: Bool = false,
                  toStdout: Bool = false) -> ReceiverHandshake {
        ReceiverHandshake(settings: .init(code: code, requireEncryption: requireEncryption,
                                          toStdout: toStdout), nonce: receiverNonce)
    }

    /// Runs both machines until neither has anything to send.
    func run(_ s: inout SenderHandshake, _ r: inout ReceiverHandshake)
        -> (SenderHandshake.Outcome, ReceiverHandshake.Outcome) {
        var toReceiver = [s.hello]  // what the banner brought out
        var sOut = SenderHandshake.Outcome.waiting
        var rOut = ReceiverHandshake.Outcome.waiting
        while let f = toReceiver.first {
            toReceiver.removeFirst()
            let rs = r.receive(f)
            rOut = rs.outcome
            for g in rs.send {
                let ss = s.receive(g)
                sOut = ss.outcome
                toReceiver += ss.send
            }
            if case .refused(let e, _) = rOut { sOut = s.receive(.error(e)).outcome }
        }
        return (sOut, rOut)
    }

    @Test func bothSidesProveTheCodeAndAgreeOnKeys() {
        var s = sender(features: [.xxh3, .encrypt], code: code)
        var r = receiver(code: code)
        let (so, ro) = run(&s, &r)
        guard case .established(let e) = so, case .established(.push(let v, _, let features, let keys)) = ro else {
            Issue.record("not established: \(so) / \(ro)")
            return
        }
        #expect(v == ProtocolVersion.max && e.version == v)
        #expect(features.contains(.encrypt) && features.contains(.auth))
        #expect(e.keys != nil && e.keys == keys, "both sides derive keys from the same values")
        #expect(!e.unauthenticated)
    }

    /// Both sides tag with Poly1305 only when the sender offered it and the
    /// push is not sealed; a sender that does not know the bit (an older
    /// ft) and its receiver both settle on HMAC-SHA256.
    @Test(arguments: [(Features([.xxh3, .poly1305Tags]), SessionMAC.Algorithm.poly1305),
                      (Features([.xxh3]), .hmacSHA256),
                      (Features([.xxh3, .poly1305Tags, .encrypt, .aes256GCM, .chacha20Poly1305]), .hmacSHA256)])
    func bothSidesAgreeOnHowFramesAreTagged(_ offered: Features, _ expected: SessionMAC.Algorithm) {
        var s = sender(features: offered, code: code)
        var r = receiver(code: code)
        let (so, ro) = run(&s, &r)
        guard case .established(let e) = so, case .established(.push(_, _, let features, _)) = ro else {
            Issue.record("not established: \(so) / \(ro)")
            return
        }
        #expect(e.tags == expected)
        #expect(SessionMAC.Algorithm.agreed(receiverHello: features) == expected)
    }

    @Test func aWrongCodeIsRefusedAndCounted() {
        var s = sender(code: other)
        var r = receiver(code: code)
        let (so, ro) = run(&s, &r)
        guard case .refused(let e, let wrong) = ro else {
            Issue.record("a wrong code got through: \(ro)")
            return
        }
        #expect(wrong && e.code == .auth && e.message.contains("wrong code"))
        #expect(so == .failed(.refused(e)))
    }

    @Test func aReceiverThatCannotProveTheCodeIsNotTrusted() {
        var s = sender(code: code)
        guard case .hello = s.hello else { return }
        _ = s.receive(.hello(Hello(role: .receiver, features: [.xxh3, .auth], sessionID: session, nonce: receiverNonce)))
        let fake = SessionKeys(code: other, sessionID: session, senderNonce: senderNonce, receiverNonce: receiverNonce)
        #expect(s.receive(.auth(fake.proof(.receiver))).outcome == .failed(.receiverUnproven))
    }

    @Test func aProofFromTheOtherDirectionIsWorthless() {
        // A receiver that reflects the sender's own proof back.
        var s = sender(code: code)
        _ = s.receive(.hello(Hello(role: .receiver, features: [.xxh3, .auth], sessionID: session, nonce: receiverNonce)))
        let keys = SessionKeys(code: code, sessionID: session, senderNonce: senderNonce, receiverNonce: receiverNonce)
        #expect(s.receive(.auth(keys.proof(.sender))).outcome == .failed(.receiverUnproven))
    }

    @Test func aSenderWithoutACodeIsToldWhy() {
        var s = sender(code: nil)
        let step = s.receive(.hello(Hello(role: .receiver, features: [.xxh3, .auth], nonce: receiverNonce)))
        #expect(step.outcome == .failed(.needCode) && step.send.isEmpty)
    }

    @Test func anyoneIsTakenOnlyWhenNothingNeedsTheCode() {
        var plain = sender(code: code)
        var open = receiver(code: nil)
        let (so, ro) = run(&plain, &open)
        guard case .established(let e) = so, case .established(.push) = ro else {
            Issue.record("a --no-auth push did not go through: \(so) / \(ro)")
            return
        }
        #expect(e.unauthenticated, "the sender is told its code was not needed")
        var hop = sender(.relayHop, code: code)
        #expect(hop.receive(.hello(Hello(role: .receiver, features: [.xxh3], nonce: receiverNonce))).outcome
                == .failed(.receiverTakesAnyone), "a chain hop must take the code")
        var sealed = sender(features: [.xxh3, .encrypt], code: code)
        var noAuth = receiver(code: nil)
        guard case .refused(let e2, _) = run(&sealed, &noAuth).1 else {
            Issue.record("--encrypt accepted without a code")
            return
        }
        #expect(e2.message.contains("--encrypt needs the one-time code"))
    }

    @Test func admissionRulesAnswerTheHello() {
        var plain = sender(code: code)
        var sealedOnly = receiver(code: code, requireEncryption: true)
        guard case .refused(let e, _) = run(&plain, &sealedOnly).1 else { Issue.record("plaintext taken by --encrypt"); return }
        #expect(e.message.contains("encrypted pushes only"))

        var wantsStreams = sender(features: [.xxh3, .dataStreams], code: code)
        var stdout = receiver(code: code, toStdout: true)
        guard case .established(.push(_, _, let features, _)) = run(&wantsStreams, &stdout).1 else { Issue.record("stdout push refused"); return }
        #expect(!features.contains(.dataStreams), "a stdout receiver takes one stream")
    }

    @Test func aDataStreamJoinsAfterItsProofAndGetsNoProofBack() {
        var s = sender(.dataStream, features: [.dataStream], code: code)
        var r = receiver(code: code)
        let hello = r.receive(s.hello)
        #expect(hello.outcome == .waiting, "not before the code's proof")
        let proofStep = s.receive(hello.send[0])
        #expect(proofStep.send.count == 1)
        guard case .established = proofStep.outcome else { Issue.record("stream not ready after its proof"); return }
        let joined = r.receive(proofStep.send[0])
        #expect(joined.send.isEmpty, "no proof back on a data stream")
        #expect(joined.outcome == .established(.dataStream(sessionID: session)))
    }

    @Test func versionsAndRolesAreChecked() {
        var r = receiver(code: nil)
        var old = Hello(role: .sender)
        old.minVersion = 9
        old.maxVersion = 9
        guard case .refused(let e, _) = r.receive(.hello(old)).outcome else { Issue.record("a future version was taken"); return }
        #expect(e.code == .version && e.message.contains("upgrade"))
        var r2 = receiver(code: nil)
        guard case .refused(let e2, _) = r2.receive(.hello(Hello(role: .receiver))).outcome else { Issue.record("a receiver hello taken"); return }
        #expect(e2.message.contains("not a sender"))
        var r3 = receiver(code: code)
        _ = r3.receive(.hello(Hello(role: .sender)))
        guard case .refused(let e3, _) = r3.receive(.totals(Totals(entries: 0, bytes: 0))).outcome else {
            Issue.record("a manifest instead of the proof was taken")
            return
        }
        #expect(e3.code == .auth && e3.message.contains("instead of proving"))
        var r4 = receiver(code: nil)
        #expect(r4.receive(.error(ErrorFrame(.busy, "bye"))).outcome == .peerFailed(ErrorFrame(.busy, "bye")))
    }
}
