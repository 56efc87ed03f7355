import FTEngine
import FTWire
import Logging

/// A chain push: this host keeps its copy and relays the stream on.
extension PushSession {
    func startRelay(_ hops: [String]) {
        if !hops.isEmpty {
            if let e = server.policy.relayRefusal(encrypted: encrypted, dataStreams: machine.parallel) {
                fail(.refused(e, peer: peer), frame: e)
                return
            }
            guard let code = server.code else { return }
            server.logger.info("session \(id): relaying to \(hops.joined(separator: ", "))")
            let link = RelayLink(session: self, loop: server.loop, offload: server.offload, hops: hops, code: code,
                                 verify: true, timeoutSeconds: config.idleTimeoutSeconds)
            self.link = link
            link.start()
        }
        connection.read()
    }

    /// Frames the next host needs, as they arrive (payload follows on the
    /// pipes' twins).
    func relayForward(_ f: Frame) {
        guard let link, !link.final else { return }
        switch f {
        case .pushInfo, .batch, .totals, .data, .hole, .fileEnd, .smallFiles, .end:
            link.forward(f)
        default:
            break
        }
    }

    /// The link's state moved: it is ready, writable, or final.
    func relayChanged() {
        guard let link, !connection.isClosing else {
            connection.finishIfClosed()
            return
        }
        if let waiting = reviewWaitsForLink, link.final || link.state == .ready {
            reviewWaitsForLink = nil
            answer(waiting.batchID, offers: waiting.offers)
        }
        let released = heldAnswers.prefix { link.mayAnswer($0.batchID) }
        if !released.isEmpty {
            heldAnswers.removeFirst(released.count)
            sendAnswers(released.map(\.frames))
        }
        connection.relayChanged()
        if link.final, let done = heldDone {
            heldDone = nil
            complete(done)
        }
    }

    func relayActivity() { connection.lastActivity = monotonicNanoseconds() }

    /// An answer or the `done` for the sender waits on the next host.
    var waitsOnLink: Bool {
        guard let link, !link.final else { return false }
        return !heldAnswers.isEmpty || reviewWaitsForLink != nil || heldDone != nil
    }

    func relayNote(_ message: String) {
        server.logger.warning("session \(id): \(message)")
    }
}
