import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// What the sender does with the receiver's frames: the handshake's steps,
/// the manifest, and the machine's answers.
extension Sender {
    func received(_ f: Frame) {
        guard let conn = connection else { return }
        guard established else {
            let step = handshake.receive(f)
            for frame in step.send { conn.channel.enqueue(frame) }
            switch step.outcome {
            case .waiting:
                pump()
            case .established(let e):
                established = true
                receiverFeatures = e.receiverFeatures
                if e.unauthenticated { logger.warning("\(peer) accepts anyone (--no-auth); the code was not needed") }
                if let keys = e.keys {
                    // Both proofs are in: everything from here on is sealed.
                    // The receiver sends nothing after its proof until our
                    // manifest, so nothing plain may wait in the read-ahead.
                    guard !conn.channel.hasBufferedInput else {
                        finish(.protocolViolation("the receiver sent more after its proof", peer: peer))
                        return
                    }
                    conn.channel.cipher = SessionCipher(keys, role: .sender)
                }
                sendManifest()
            case .failed(let why):
                handshakeFailed(why, conn)
                return
            }
            if !done, failure == nil { conn.channel.read() }
            return
        }
        act(machine.receive(f))
        if !done, failure == nil { conn.channel.read() }
    }

    func handshakeFailed(_ why: SenderHandshake.Failure, _ conn: Connection) {
        switch why {
        case .needCode:
            // Tell the receiver why we leave, directly: finish() closes at once.
            let bytes = FrameCodec.encode(.error(ErrorFrame(.auth, "the sender has no code (FT_CODE or --code-file)")))
            _ = bytes.withUnsafeBytes { send(conn.socket.fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL | MSG_DONTWAIT)) }
            finish(.source("\(peer) requires its one-time code: run ft send with FT_CODE=CODE or --code-file FILE (ft recv printed the code)"))
        case .receiverUnproven:
            finish(.peer(ErrorFrame(.auth, "it could not prove it knows the code: a wrong code, or not the receiver you meant"), peer: peer))
        case .receiverTakesAnyone:
            finish(.source("\(peer) accepts anyone (--no-auth), so there is no code to make keys from; --encrypt needs a receiver with a code"))
        case .refused(let e):
            finish(.peer(e, peer: peer))
        case .violation(let s):
            finish(.protocolViolation(s, peer: peer))
        }
    }

    func sendManifest() {
        guard let conn = connection else { return }
        if let hops = config.relay { conn.channel.enqueue(.relay(Relay(hops: hops))) }
        for part in Manifest.frames(items.map(\.entry)) { conn.channel.enqueue(.manifest(part)) }
        let total = items.reduce(UInt64(0)) { $0 + ($1.entry.kind == .file ? $1.entry.size : 0) }
        conn.channel.enqueue(.manifestEnd(ManifestEnd(entryCount: UInt32(items.count), totalBytes: total,
                                                      flags: config.verify ? [] : .noVerify)))
        pump()
    }

    func act(_ action: SenderMachine.Action) {
        switch action {
        case .none:
            break
        case .startData(let accept):
            if accept.have.isEmpty {
                startData(offered: false, ResumeCheck.Result())
            } else {
                // Hashing the offered prefixes may read gigabytes: off the loop.
                let items = self.items
                offload.run({ ResumeCheck.decide(accept.have, items: items) }) { [self] result in
                    guard !done else { return }
                    for name in result.differing {
                        logger.info("'\(name)': the receiver's partial copy differs from this file; sending it whole")
                    }
                    startData(offered: true, result)
                }
            }
        case .acknowledged(let index, let ack):
            acknowledged(index, ack)
        case .complete(let d):
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            let files = items.filter { $0.entry.kind != .directory }.count
            summary = .init(session: "send", peer: peer, files: files, directories: items.count - files,
                            bytes: d.bytes - min(d.bytes, skipped), skippedBytes: skipped, seconds: seconds, verified: config.verify,
                            digests: agreed,
                            engine: EngineReport(backend: loop.backend.kind, dataPath: config.path.rawValue, stats: loop.stats),
                            relayed: relayed)
            if let ev = meter.advance(by: 0, path: "", fileBytes: 0, fileSize: nil, force: true) { events(ev) }
            events(.finished(summary!))
            finish(nil)
        case .hopReport(let r):
            relayed = r.outcomes
        case .peerFailed(let e):
            finish(.peer(e, peer: peer))
        case .violation(let s):
            finish(.protocolViolation(s, peer: peer))
        }
    }

    func acknowledged(_ index: Int, _ ack: FileAck) {
        let path = items[index].displayPath
        for s in streams { s.forget(index) }
        scheduler?.forget(index)
        streamSources[index] = nil
        guard ack.status == .committed else {
            finish(.verification("the receiver could not commit '\(path)' (\(ack.status))"))
            return
        }
        if let mine = sentDigests[index] {
            guard mine == ack.digest else {
                finish(.verification("'\(path)': the receiver's hash \(ack.digest.hex) differs from ours \(mine.hex)"))
                return
            }
            agreed.append((path, mine))
        }
        let size = items[index].entry.kind == .stdin ? (stdinResult?.size ?? 0) : items[index].entry.size
        events(.fileDone(.init(session: "send", path: path, bytes: size, digest: sentDigests[index])))
    }
}
