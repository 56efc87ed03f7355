import Foundation
import Testing
import FTTestSupport
import FTTransfer
import FTWire

/// A look-alike receiver that relays the real sender's and the real
/// receiver's handshake, then speaks for itself. The proofs alone do not
/// stop it (they are bound to the session, not to the connection); the
/// tags on every frame after them do.
@Suite(.serialized) struct SessionBindingTests {
    static func sendAll(_ fd: CInt, _ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Relays hello and proof each way between a real `ft send` and the
    /// real receiver, then hands the receiver's connection to `attack`,
    /// with the frames the sender sent next. Returns the receiver's replies.
    func relayHandshake(receiverPort: UInt16, source: String,
                        attack: (_ receiver: RawPeer, _ senderFrames: () -> [UInt8]?, _ toSender: ([UInt8]) -> Void) -> Void,
                        readReplies: Bool = true, senderSaid: (Finished) -> Void = { _ in }) throws -> [Frame] {
        let (listener, port) = loopbackListener()
        defer { close(listener) }
        let sender = try Child(ftPath, ["send", "127.0.0.1:\(port)", source, "--timeout", "5"])
        defer { if sender.isRunning { sender.kill(SIGKILL); _ = sender.wait(seconds: 10) } }
        let fromSender = accept(listener, nil, nil)
        #expect(fromSender >= 0)
        defer { close(fromSender) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fromSender, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let toReceiver = try RawPeer(port: receiverPort)
        // ← banner, hello →, ← hello, proof →, ← proof: all five pass untouched.
        for toward in [false, true, false, true, false] {
            guard let frame = readRawFrame(toward ? fromSender : toReceiver.fd) else { throw TestFailure("the handshake did not pass through the relay") }
            if toward { toReceiver.send(frame) } else { Self.sendAll(fromSender, frame) }
        }
        attack(toReceiver, { readRawFrame(fromSender) }, { Self.sendAll(fromSender, $0) })
        // The receiver's frames are tagged too; the relay can still read
        // them (tags authenticate, they do not hide), so drop the tag.
        var replies: [Frame] = []
        while readReplies, let raw = readRawFrame(toReceiver.fd) {
            let tagged = raw[1] & SessionMAC.taggedFlag != 0
            let body = Array(raw[FramePrefix.size..<(raw.count - (tagged ? SessionMAC.tagSize : 0))])
            guard let type = FrameType(rawValue: raw[0]),
                  let f = try? body.withUnsafeBytes({ try FrameCodec.decodeBody(FramePrefix(type: type, length: UInt32(body.count)), $0) })
            else { break }
            replies.append(f)
            // The receiver waits for its peer to close after an error.
            if case .error = f { break }
        }
        shutdown(fromSender, Int32(SHUT_RDWR))
        senderSaid(sender.wait(seconds: 20))
        return replies
    }

    /// A destination, a receiver serving it, and the honest sender's file.
    struct Scene {
        let tmp = TempDir()
        let dst: String
        let src: String
        let recv: FTReceiver

        init() throws {
            dst = tmp.sub("dst")
            src = tmp.sub("src") + "/honest.txt"
            writeFile(src, Array("the sender's own file\n".utf8))
            recv = try FTReceiver(dir: dst)
        }
    }

    @Test func aRelayThatKnowsNoCodeCannotPushItsOwnFiles() throws {
        let scene = try Scene()
        defer { scene.tmp.cleanup() }
        let (dst, src, recv) = (scene.dst, scene.src, scene.recv)

        let replies = try relayHandshake(receiverPort: recv.port, source: src) { receiver, _, _ in
            // The proofs passed; now the relay pushes a file of its own,
            // as plain frames (it has no key to tag them with).
            receiver.send(FrameCodec.encode(.pushInfo(PushInfo())))
            receiver.send(FrameCodec.encode(.batch(Batch(batchID: 1, entries: [fileEntry(Array("planted-by-mitm.txt".utf8), size: 4)]))))
            receiver.send(FrameCodec.encode(.totals(Totals(entries: 1, bytes: 4))))
        }
        let message = replies.compactMap(\.errorMessage).first ?? ""
        #expect(message.contains("without its tag"), "\(replies)")
        #expect(listTree(dst).isEmpty, "\(listTree(dst))")
        #expect(recv.child.isRunning, "the receiver must keep serving")
        _ = recv.stop()
    }

    @Test func aRelayThatAltersOneTaggedFrameIsCaught() throws {
        let scene = try Scene()
        defer { scene.tmp.cleanup() }
        let (dst, src, recv) = (scene.dst, scene.src, scene.recv)

        let replies = try relayHandshake(receiverPort: recv.port, source: src) { receiver, senderFrames, _ in
            // Pass the sender's push-info, then its first batch with one
            // byte of the path changed (h → p: "ponest.txt").
            guard let info = senderFrames(), var batch = senderFrames() else { return }
            receiver.send(info)
            if let at = batch.firstIndex(of: UInt8(ascii: "h")) { batch[at] = UInt8(ascii: "p") }
            receiver.send(batch)
        }
        let message = replies.compactMap(\.errorMessage).first ?? ""
        #expect(message.contains("failed its tag check"), "\(replies)")
        #expect(listTree(dst).isEmpty, "\(listTree(dst))")
        _ = recv.stop()
    }

    @Test func replayingATaggedFrameIsCaught() throws {
        let scene = try Scene()
        defer { scene.tmp.cleanup() }
        let (dst, src, recv) = (scene.dst, scene.src, scene.recv)

        let replies = try relayHandshake(receiverPort: recv.port, source: src) { receiver, senderFrames, _ in
            guard let info = senderFrames() else { return }
            receiver.send(info)
            receiver.send(info)
        }
        let message = replies.compactMap(\.errorMessage).first ?? ""
        #expect(message.contains("failed its tag check"), "\(replies)")
        #expect(listTree(dst).isEmpty)
        _ = recv.stop()
    }

    @Test func aRelayCannotTellTheSenderThatThePushSucceeded() throws {
        let scene = try Scene()
        defer { scene.tmp.cleanup() }
        let (src, recv) = (scene.src, scene.recv)
        var said: Finished?
        _ = try relayHandshake(receiverPort: recv.port, source: src, attack: { _, senderFrames, toSender in
            // Swallow the push and answer the sender as if it had landed.
            _ = senderFrames()
            toSender(FrameCodec.encode(.done(Done(files: 1, bytes: 22, skippedFiles: 0, skippedBytes: 0,
                                                  patchedFiles: 0, deleted: 0, symlinks: 0, hardLinks: 0))))
        }, readReplies: false, senderSaid: { said = $0 })
        let result = try #require(said)
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("without its tag"), "\(result.stderr)")
        _ = recv.stop()
    }

    /// Both tag algorithms carry a whole push to a real receiver: Poly1305,
    /// which this ft offers, and HMAC-SHA256, which is all a sender of the
    /// release before it knows (its hello lacks the bit).
    @Test(arguments: [Features([.xxh3, .poly1305Tags]), Features([.xxh3])])
    func aPushArrivesUnderEitherTagAlgorithm(_ features: Features) throws {
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let recv = try FTReceiver(dir: dst, extra: ["--once"])
        let p = try RawPeer(port: recv.port)
        let bytes = patternBytes(40_000, seed: 3)
        let answer = p.offer([fileEntry(Array("tagged.bin".utf8), size: UInt64(bytes.count))], features: features)
        #expect(p.mac?.algorithm == (features.contains(.poly1305Tags) ? .poly1305 : .hmacSHA256))
        guard case .answer? = answer else {
            Issue.record("the receiver answered \(String(describing: answer))")
            return
        }
        let digest = bytes.withUnsafeBytes { StreamHasher.hash($0) }
        p.send(.smallFiles(SmallFiles(files: [SmallFiles.File(fileID: 1, digest: digest, bytes: bytes)])))
        p.send(.end)
        let replies = p.readUntilClosed()
        #expect(replies.contains { if case .done = $0 { return true } else { return false } }, "\(replies)")
        #expect(readFile(dst + "/tagged.bin") == bytes)
        _ = recv.child.wait()
    }
}
