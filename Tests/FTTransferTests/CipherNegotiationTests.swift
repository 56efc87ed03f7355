import Testing
import FTTransfer
import FTWire

/// Which cipher seals an `--encrypt` push: the sender offers, the receiver
/// picks one, and each side refuses a choice the other did not allow.
@Suite struct CipherNegotiationTests {
    let code = AuthCode.normalize("k7mq-2fxp-93rd")!
    let session = [UInt8](repeating: 1, count: 16)

    func sender(offering ciphers: [Cipher]) -> SenderHandshake {
        var f: Features = [.xxh3, .encrypt]
        for c in ciphers { f.insert(c.feature) }
        var s = SenderHandshake(purpose: .push, features: f, code: code, sessionID: session,
                                nonce: [UInt8](repeating: 2, count: 32))
        _ = s.receive(ReceiverHandshake.banner)
        return s
    }

    func receiver(taking ciphers: [Cipher]) -> ReceiverHandshake {
        ReceiverHandshake(settings: .init(code: code, ciphers: ciphers), nonce: [UInt8](repeating: 3, count: 32))
    }

    /// The receiver's answer to the sender's hello.
    func answer(_ s: SenderHandshake, _ r: inout ReceiverHandshake) -> ReceiverHandshake.Step {
        r.receive(s.hello)
    }

    /// Both sides to the end; the cipher each side settled on.
    func settle(_ s: inout SenderHandshake, _ r: inout ReceiverHandshake) -> (Cipher?, Cipher?, String?) {
        let hello = r.receive(s.hello)
        if case .refused(let e, _) = hello.outcome { return (nil, nil, e.message) }
        var sStep = s.receive(hello.send[0])
        if case .failed(let why) = sStep.outcome { return (nil, nil, "\(why)") }
        let proof = r.receive(sStep.send[0])
        guard case .established(.push(_, _, let features, _)) = proof.outcome else { return (nil, nil, "\(proof.outcome)") }
        sStep = s.receive(proof.send[0])
        guard case .established(let e) = sStep.outcome else { return (nil, nil, "\(sStep.outcome)") }
        return (e.cipher, Cipher.named(in: features).first, nil)
    }

    @Test func theReceiversFirstChoiceThatWasOfferedWins() {
        for (offer, take, want) in [
            ([Cipher.aes256GCM, .chacha20Poly1305], [Cipher.aes256GCM, .chacha20Poly1305], Cipher.aes256GCM),
            ([.aes256GCM, .chacha20Poly1305], [.chacha20Poly1305, .aes256GCM], .chacha20Poly1305),
            ([.chacha20Poly1305], [.aes256GCM, .chacha20Poly1305], .chacha20Poly1305),
            ([.aes256GCM], [.chacha20Poly1305, .aes256GCM], .aes256GCM),
        ] {
            var s = sender(offering: offer)
            var r = receiver(taking: take)
            let (sc, rc, why) = settle(&s, &r)
            #expect(why == nil, "\(offer) → \(take): \(why ?? "")")
            #expect(sc == want && rc == want, "\(offer) → \(take): sender \(String(describing: sc)), receiver \(String(describing: rc))")
        }
    }

    @Test func theReceiverRefusesWhenNothingOfferedIsTaken() {
        let s = sender(offering: [.chacha20Poly1305])
        var r = receiver(taking: [.aes256GCM])
        let step = answer(s, &r)
        guard case .refused(let e, let wrongCode) = step.outcome else {
            Issue.record("not refused: \(step.outcome)")
            return
        }
        #expect(!wrongCode)
        #expect(e.message.contains("chacha20-poly1305") && e.message.contains("aes-256-gcm") && e.message.contains("--cipher"), "\(e.message)")
    }

    @Test func theSenderRefusesACipherItDidNotOffer() {
        // A receiver (or something in the path) answers with another cipher.
        var s = sender(offering: [.aes256GCM])
        var reply = Hello(role: .receiver, features: [.xxh3, .auth, .encrypt, .chacha20Poly1305], sessionID: session,
                          nonce: [UInt8](repeating: 3, count: 32))
        reply.minVersion = ProtocolVersion.max
        let step = s.receive(.hello(reply))
        guard case .failed(.cipher(let m)) = step.outcome else {
            Issue.record("not refused: \(step.outcome)")
            return
        }
        #expect(m.accepted == [.chacha20Poly1305] && m.offered == [.aes256GCM])
        // Two ciphers at once are no choice either.
        var s2 = sender(offering: [.aes256GCM, .chacha20Poly1305])
        reply.features.insert(.aes256GCM)
        guard case .failed(.cipher) = s2.receive(.hello(reply)).outcome else {
            Issue.record("a reply naming two ciphers was taken")
            return
        }
        // Nor may a receiver leave encryption out.
        var s3 = sender(offering: [.aes256GCM])
        reply.features = [.xxh3, .auth]
        guard case .failed(.violation(let why)) = s3.receive(.hello(reply)).outcome else {
            Issue.record("a reply without encryption was taken")
            return
        }
        #expect(why.contains("seal"))
    }

    @Test func anFTThatKnewOnlyChaChaStillTalks() {
        // Its hello asks for encryption with no cipher bit; its reply has none.
        var old = SenderHandshake(purpose: .push, features: [.xxh3, .encrypt], code: code, sessionID: session,
                                  nonce: [UInt8](repeating: 2, count: 32))
        _ = old.receive(ReceiverHandshake.banner)
        var r = receiver(taking: [.aes256GCM, .chacha20Poly1305])
        let (sc, rc, why) = settle(&old, &r)
        #expect(why == nil && rc == .chacha20Poly1305 && sc == .chacha20Poly1305, "\(why ?? "")")

        var s = sender(offering: [.aes256GCM, .chacha20Poly1305])
        var reply = Hello(role: .receiver, features: [.xxh3, .auth, .encrypt], sessionID: session,
                          nonce: [UInt8](repeating: 3, count: 32))
        reply.minVersion = ProtocolVersion.max
        #expect(s.receive(.hello(reply)).outcome == .waiting, "an old receiver's reply is read as ChaCha20-Poly1305")
    }
}
