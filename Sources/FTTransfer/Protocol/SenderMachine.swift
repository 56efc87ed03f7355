import FTWire

/// The sender's protocol logic after the handshake, with no I/O: it is told
/// which batches went out and is fed the receiver's answers and
/// acknowledgements, each checked against what was announced.
package struct SenderMachine: Sendable {
    package enum Phase: Equatable, Sendable {
        case sending
        case awaitingDone
        case finished
        case failed
    }

    package enum Action: Equatable, Sendable {
        /// The receiver's whole answer to batch `batchID`: decide on its
        /// offers, then send the batch's plan (if it offered anything) and data.
        case answered(batchID: UInt32, [BatchAnswer.Item])
        /// Every entry of batch `batchID` is settled on the receiver.
        case acknowledged(batchID: UInt32, [BatchAck.Result])
        /// The receiver confirmed the whole push.
        case complete(Done)
        /// A chain receiver's news of the hosts after it.
        case hopReport(HopReport)
        /// The receiver refused or failed.
        case peerFailed(ErrorFrame)
        /// The receiver broke the protocol.
        case violation(String)
        case none
    }

    private struct Outstanding: Sendable {
        var ids: Set<UInt32>
        var answer: [BatchAnswer.Item]? = []
        var answered = false
    }

    package private(set) var phase = Phase.sending
    private var batches: [UInt32: Outstanding] = [:]
    private var nextAnswer: UInt32 = 1
    private var reported = false

    package init() {}

    /// Batches announced and not yet acknowledged.
    package var outstanding: Int { batches.count }

    /// Batch `batchID` with these entries went out.
    package mutating func announced(_ batchID: UInt32, ids: [UInt32]) {
        batches[batchID] = Outstanding(ids: Set(ids))
    }

    package mutating func receive(_ frame: Frame) -> Action {
        if case .error(let e) = frame {
            phase = .failed
            return .peerFailed(e)
        }
        switch (phase, frame) {
        case (.sending, .answer(let a)), (.awaitingDone, .answer(let a)):
            return answer(a)
        case (.sending, .batchAck(let a)), (.awaitingDone, .batchAck(let a)):
            return ack(a)
        case (.sending, .report(let r)), (.awaitingDone, .report(let r)):
            guard !reported else { return violation("a second report") }
            reported = true
            return .hopReport(r)
        case (.awaitingDone, .done(let d)):
            guard batches.isEmpty else { return violation("done while \(batches.count) batches are not acknowledged") }
            phase = .finished
            return .complete(d)
        default:
            return violation("unexpected \(frame.type) frame while \(phase)")
        }
    }

    private mutating func answer(_ a: BatchAnswer) -> Action {
        guard a.batchID == nextAnswer, var b = batches[a.batchID], !b.answered else {
            return violation("an answer for batch \(a.batchID) where batch \(nextAnswer) was due")
        }
        var seen = Set(b.answer?.map(\.fileID) ?? [])
        for item in a.items {
            guard b.ids.contains(item.fileID), seen.insert(item.fileID).inserted else {
                return violation("an answer for file id \(item.fileID), which batch \(a.batchID) does not hold or answered twice")
            }
        }
        b.answer?.append(contentsOf: a.items)
        guard a.last else {
            batches[a.batchID] = b
            return .none
        }
        let items = b.answer ?? []
        b.answer = nil
        b.answered = true
        batches[a.batchID] = b
        nextAnswer += 1
        return .answered(batchID: a.batchID, items)
    }

    private mutating func ack(_ a: BatchAck) -> Action {
        guard let b = batches[a.batchID], b.answered else {
            return violation("an acknowledgement of batch \(a.batchID), which is not answered or not in flight")
        }
        guard a.results.count == b.ids.count, Set(a.results.map(\.fileID)) == b.ids else {
            return violation("the acknowledgement of batch \(a.batchID) does not name each of its \(b.ids.count) entries once")
        }
        batches[a.batchID] = nil
        return .acknowledged(batchID: a.batchID, a.results)
    }

    /// The sender wrote its `end` frame.
    package mutating func endSent() {
        if phase == .sending { phase = .awaitingDone }
    }

    private mutating func violation(_ s: String) -> Action {
        phase = .failed
        return .violation(s)
    }
}

extension SenderMachine.Phase: CustomStringConvertible {
    package var description: String {
        switch self {
        case .sending: return "sending"
        case .awaitingDone: return "waiting for the receiver to confirm the push"
        case .finished: return "finished"
        case .failed: return "failed"
        }
    }
}
