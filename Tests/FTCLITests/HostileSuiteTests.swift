import Foundation
import Testing
import FTTestSupport
import FTTransfer
import FTWire

/// A crafted session: what the hostile sender does, and a word the
/// receiver's refusal must contain.
struct HostileCase: Sendable {
    var label: String
    var expect: String
    var script: @Sendable (RawPeer) -> Void
}

func entry(_ path: String, id: UInt32 = 1, size: UInt64 = 5, kind: ManifestEntry.Kind = .file) -> ManifestEntry {
    fileEntry(Array(path.utf8), id: id, size: size, kind: kind)
}

/// Handshake, push-info, one batch, its totals.
func offerRaw(_ p: RawPeer, _ entries: [ManifestEntry]) {
    _ = p.offerWithoutReading(entries)
}

/// Handshake, push-info, then these batches as they are (ids, order and
/// all), without reading anything back.
func batchesRaw(_ p: RawPeer, _ batches: [Batch], end: Bool = false) {
    p.handshake()
    p.send(.pushInfo(PushInfo()))
    for b in batches { p.send(.batch(b)) }
    if end { p.send(.end) }
}

func symlinkEntry(_ path: String, to target: String, id: UInt32 = 1) -> ManifestEntry {
    var e = entry(path, id: id, size: 0, kind: .symlink)
    e.linkTarget = Array(target.utf8)
    return e
}

func hardLinkEntry(_ path: String, to source: UInt32, id: UInt32) -> ManifestEntry {
    var e = entry(path, id: id, size: 0, kind: .hardlink)
    e.linkTo = source
    return e
}

func sparseEntry(_ path: String, size: UInt64) -> ManifestEntry {
    var e = entry(path, size: size)
    e.flags = [.sparse]
    return e
}

/// After a good offer: the receiver's answer is consumed.
func accepted(_ p: RawPeer, _ entries: [ManifestEntry]) {
    _ = p.offer(entries)
}

/// A data-stream hello naming `session`, and the proof of `code`.
func joinDataStream(_ p: RawPeer, session: [UInt8], code: String = testCode) {
    let nonce = (0..<32).map { _ in UInt8.random(in: 0...255) }
    p.send(.hello(Hello(role: .sender, features: [.dataStream], sessionID: session, nonce: nonce)))
    guard case .hello(let h)? = p.readFrame() else { return }
    p.send(.auth(AuthCode.proof(code: AuthCode.normalize(code)!, role: .sender, session: session,
                                senderNonce: nonce, receiverNonce: h.nonce)))
}

let hostileCases: [HostileCase] = {
    var cases = HostilePeerTests.hostilePaths.map { label, path in
        HostileCase(label: "path: \(label)", expect: "refusing") { p in offerRaw(p, [fileEntry(path)]) }
    }
    cases += [
        HostileCase(label: ".ssh/authorized_keys", expect: "logins or start-up") { offerRaw($0, [entry(".ssh", kind: .directory), entry(".ssh/authorized_keys", id: 2)]) },
        HostileCase(label: ".bashrc", expect: "logins or start-up") { offerRaw($0, [entry(".bashrc")]) },
        HostileCase(label: "path over 4096 bytes", expect: "over 4096") {
            offerRaw($0, [fileEntry(Array(repeating: Array("abcdefg/".utf8), count: 520).joined() + Array("x".utf8))])
        },
        HostileCase(label: "300 levels deep", expect: "levels deep") { offerRaw($0, [entry(Array(repeating: "a", count: 300).joined(separator: "/"))]) },
        HostileCase(label: "directory over an existing file", expect: "not a directory") { offerRaw($0, [entry("existing.txt", kind: .directory)]) },
        HostileCase(label: "file over an existing file", expect: "exists") { offerRaw($0, [entry("existing.txt")]) },
        HostileCase(label: "write through a planted symlink", expect: "symlink") { offerRaw($0, [entry("planted/x")]) },
        HostileCase(label: "unknown frame type", expect: "unknown frame type") { p in
            p.handshake()
            p.send([0x42, 0, 0, 0, 0, 0, 0, 0])
        },
        HostileCase(label: "frame over its cap", expect: "over the cap") { p in
            p.handshake()
            p.send([FrameType.batch.rawValue, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF])
        },
        HostileCase(label: "more bytes than announced", expect: "past the") { p in
            accepted(p, [entry("m")])
            p.send(.data(DataHeader(fileID: 1, length: 6, offset: 0)))
            p.send([UInt8](repeating: 1, count: 6))
        },
        HostileCase(label: "chunk for an unknown file id", expect: "unknown file id") { p in
            accepted(p, [entry("m")])
            p.send(.data(DataHeader(fileID: 77, length: 1, offset: 0)))
        },
        HostileCase(label: "wrong digest", expect: "failed verification") { p in
            accepted(p, [entry("m")])
            p.send(.data(DataHeader(fileID: 1, length: 5, offset: 0)))
            p.send(Array("hello".utf8))
            p.send(.fileEnd(FileEnd(fileID: 1, size: 5, digest: Digest128(high: 1, low: 1))))
        },
        HostileCase(label: "a data stream for no push", expect: "no push") { p in
            joinDataStream(p, session: (0..<16).map { _ in UInt8.random(in: 0...255) })
            p.send(.data(DataHeader(fileID: 1, length: 1, offset: 0)))
            p.send([1])
        },
        HostileCase(label: "a data stream with a wrong code", expect: "wrong code") { p in
            joinDataStream(p, session: (0..<16).map { _ in UInt8.random(in: 0...255) }, code: "zzzz-zzzz-zzzz")
        },
        HostileCase(label: "a data stream's chunk past the size", expect: "past the") { p in
            // A push that asked for streams, then a stream of it that lies.
            p.handshake(features: [.xxh3, .dataStreams])
            p.send(.pushInfo(PushInfo()))
            p.send(.batch(Batch(batchID: 1, entries: [entry("stream-victim")])))
            _ = p.readFrame()
            guard let stream = try? RawPeer(port: p.port) else { return }
            joinDataStream(stream, session: p.session)
            stream.send(.data(DataHeader(fileID: 1, length: 4, offset: 3)))
            stream.send([1, 2, 3, 4])
            _ = stream.readUntilClosed()
        },
        // Across batches: the rules hold for the whole push, though each
        // batch is dropped once it is committed.
        HostileCase(label: "an entry repeated in a later batch", expect: "announced twice") {
            batchesRaw($0, [Batch(batchID: 1, entries: [entry("d", kind: .directory), entry("d/a", id: 2)]),
                            Batch(batchID: 2, entries: [entry("d/a", id: 3)])])
        },
        HostileCase(label: "an entry inside a receiver's stage", expect: "where this receiver builds") {
            offerRaw($0, [entry(".ft-stage-0123456789abcdef", kind: .directory), entry(".ft-stage-0123456789abcdef/top", id: 2)])
        },
        HostileCase(label: "a file under a file of an earlier batch", expect: "to be a directory") {
            batchesRaw($0, [Batch(batchID: 1, entries: [entry("f")]), Batch(batchID: 2, entries: [entry("f/x", id: 2)])])
        },
        HostileCase(label: "an entry before one of an earlier batch", expect: "out of order") {
            batchesRaw($0, [Batch(batchID: 1, entries: [entry("m")]), Batch(batchID: 2, entries: [entry("b", id: 2)])])
        },
        HostileCase(label: "a batch after the end", expect: "after the end") {
            batchesRaw($0, [Batch(batchID: 1, entries: [entry("e1")])], end: true)
            $0.send(.batch(Batch(batchID: 2, entries: [entry("e2", id: 2)])))
        },
        HostileCase(label: "batch ids out of order", expect: "where batch 1 was due") {
            batchesRaw($0, [Batch(batchID: 2, entries: [entry("o")])])
        },
        HostileCase(label: "a batch over its entry cap", expect: "over \(Batch.maxEntries)") {
            batchesRaw($0, [Batch(batchID: 1, entries: (0...UInt32(Batch.maxEntries)).map { entry(String(format: "c%05d", $0), id: $0 + 1, size: 0) })])
        },
        HostileCase(label: "a batch frame over its byte cap", expect: "over the cap") { p in
            p.handshake()
            p.send(.pushInfo(PushInfo()))
            // Tagged, as a sender with the code would: one byte over the cap and its tag.
            let over = Batch.frameCap + 1 + UInt32(SessionMAC.tagSize)
            p.send([FrameType.batch.rawValue, SessionMAC.taggedFlag, 0, 0] + withUnsafeBytes(of: over.bigEndian, Array.init))
        },
        // Links and holes.
        HostileCase(label: "an entry beneath a symlink entry", expect: "announced as a symlink") {
            offerRaw($0, [symlinkEntry("s", to: "x"), entry("s/y", id: 2)])
        },
        HostileCase(label: "a symlink over an existing directory", expect: "directory") {
            offerRaw($0, [symlinkEntry("existing-dir", to: "x")])
        },
        HostileCase(label: "a hard link to an id outside the push", expect: "not a file this push announced") {
            offerRaw($0, [entry("a"), hardLinkEntry("b", to: 99, id: 2)])
        },
        HostileCase(label: "a hard link to a directory", expect: "not a file this push announced") {
            offerRaw($0, [entry("hd", kind: .directory), hardLinkEntry("hl", to: 1, id: 2)])
        },
        HostileCase(label: "a hole past the file's size", expect: "past the") { p in
            accepted(p, [sparseEntry("holey", size: 1 << 20)])
            p.send(.hole(Hole(fileID: 1, offset: 1 << 20, length: 1)))
        },
        HostileCase(label: "a hole whose end overflows", expect: "overflows") { p in
            accepted(p, [sparseEntry("holey", size: 1 << 20)])
            p.send(.hole(Hole(fileID: 1, offset: 4096, length: .max)))
        },
        HostileCase(label: "a hole over data already received", expect: "overlaps") { p in
            accepted(p, [sparseEntry("holey", size: 1 << 20)])
            p.send(.data(DataHeader(fileID: 1, length: 8, offset: 0)))
            p.send([UInt8](repeating: 7, count: 8))
            p.send(.hole(Hole(fileID: 1, offset: 4, length: 100)))
        },
        HostileCase(label: "a hole for a file not marked sparse", expect: "not a sparse file") { p in
            accepted(p, [entry("dense", size: 1 << 20)])
            p.send(.hole(Hole(fileID: 1, offset: 0, length: 4096)))
        },
        HostileCase(label: "more scattered pieces than the cap", expect: "separate pieces") { p in
            accepted(p, [sparseEntry("holey", size: 1 << 24)])
            var frames: [UInt8] = []
            for i in 0...UInt64(ReceiverMachine.maxGaps) { frames += p.encoded(.hole(Hole(fileID: 1, offset: 2 * i + 1, length: 1))) }
            p.send(frames)
        },
        HostileCase(label: "a v1 sender", expect: "upgrade ft on the peer") { $0.send(.hello(Hello(minVersion: 1, maxVersion: 1, role: .sender))) },
        HostileCase(label: "not ft at all", expect: "unknown frame type") { $0.send(Array("GET / HTTP/1.1\r\n\r\n".utf8)) },
        HostileCase(label: "a future version", expect: "version mismatch") { $0.send(.hello(Hello(minVersion: 9, maxVersion: 9, role: .sender))) },
        HostileCase(label: "wrong magic", expect: "not speaking the ft protocol") { p in
            var hello = FrameCodec.encode(.hello(Hello(role: .sender)))
            hello[8...11] = [0x58, 0x58, 0x58, 0x58]
            p.send(hello)
        },
    ]
    return cases
}()

@Suite(.serialized) struct HostileSuiteTests {
    /// The rules themselves are checked on the machines (ReceiverMachineTests,
    /// HandshakeTests); these sessions prove the process holds: refusals
    /// reach the peer, nothing lands, and the receiver keeps serving.
    @Test func craftedSessionsWriteNothingAndLeaveTheReceiverServing() throws {
        #expect(hostileCases.count >= 30)
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let dst = tmp.sub("dst")
        let outside = tmp.sub("outside")
        writeFile(dst + "/existing.txt", Array("keep me\n".utf8))
        tmp.sub("dst/existing-dir")
        symlink(outside, dst + "/planted")
        let notDirectories = { (dir: String) in
            listTree(dir).filter { rel in
                var st = stat()
                return lstat(dir + "/" + rel, &st) == 0 && st.st_mode & S_IFMT != S_IFDIR
            }
        }
        let before = notDirectories(dst)
        let recv = try FTReceiver(dir: dst)

        for c in hostileCases {
            let p = try RawPeer(port: recv.port)
            c.script(p)
            let replies = p.readUntilClosed()
            let message = replies.compactMap(\.errorMessage).first
            #expect(message?.contains(c.expect) == true, "\(c.label): \(String(describing: message)) in \(replies)")
        }
        #expect(listTree(outside).isEmpty, "something escaped the destination")
        expectSame(readFile(dst + "/existing.txt"), Array("keep me\n".utf8), "existing file")
        // Directories of a manifest accepted before its session failed may
        // stay (empty); no file, link or partial may.
        #expect(notDirectories(dst) == before, "the hostile sessions left \(listTree(dst))")

        // Other sessions are unaffected.
        let f = tmp.sub("src") + "/honest.txt"
        writeFile(f, Array("honest\n".utf8))
        #expect(try run(ftPath, ["send", recv.address, f, "-q"]).status == 0)
        let end = recv.stop()
        #expect(end.status == 0, "the receiver did not end cleanly: \(end.stderr)")
        #expect(!listTree(dst).contains { $0.hasPrefix(".ft-stage-") }, "a failed session's stage stayed: \(listTree(dst).prefix(8))")
        let errors = recv.events.filter { $0["event"] as? String == "error" }
        #expect(errors.count == hostileCases.count, "one clear error per hostile session, got \(errors.count)")
        #expect(errors.allSatisfy { !(($0["message"] as? String) ?? "").unicodeScalars.contains { $0.value == 0x1B || $0.value == 0 } })
    }

    @Test func aThousandIdleConnectionsDoNotBlockARealSender() throws {
        try raiseOpenFiles(2100)
        let tmp = TempDir()
        defer { tmp.cleanup() }
        let recv = try FTReceiver(dir: tmp.sub("dst"))
        var idle: [RawPeer] = []
        for _ in 0..<1000 { idle.append(try RawPeer(port: recv.port)) }
        let f = tmp.sub("src") + "/through.bin"
        let bytes = patternBytes(3 << 20, seed: 1000)
        writeFile(f, bytes)
        let push = try run(ftPath, ["send", recv.address, f, "-q"], seconds: 60)
        #expect(push.status == 0, "\(push.stderr)")
        expectSame(readFile(tmp.path + "/dst/through.bin"), bytes, "pushed past 1000 idle connections")
        for p in idle { p.hangUp() }
        idle.removeAll()
        let end = recv.stop()
        #expect(end.status == 0)
    }
}
