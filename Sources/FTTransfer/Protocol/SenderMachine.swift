import FTWire

/// The sender's protocol logic after the handshake, with no I/O: it is fed
/// the receiver's frames and answers with what to do next.
public struct SenderMachine: Sendable {
    public enum Phase: Equatable, Sendable {
        case awaitingAccept
        case sending
        case awaitingDone
        case finished
        case failed
    }

    public enum Action: Equatable, Sendable {
        /// Start the data, skipping what the receiver already has.
        case startData(Accept)
        /// The receiver committed (or rejected) a file.
        case acknowledged(index: Int, FileAck)
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

    public private(set) var phase = Phase.awaitingAccept
    private let fileIndex: [UInt32: Int]
    private var acked: Set<Int> = []
    private let dataEntries: Int
    private var reported = false

    public init(entries: [ManifestEntry]) {
        var index: [UInt32: Int] = [:]
        for (i, e) in entries.enumerated() { index[e.fileID] = i }
        fileIndex = index
        dataEntries = entries.filter { $0.kind != .directory }.count
    }

    public var allAcknowledged: Bool { acked.count == dataEntries }

    public func isAcknowledged(_ index: Int) -> Bool { acked.contains(index) }

    public mutating func receive(_ frame: Frame) -> Action {
        if case .error(let e) = frame {
            phase = .failed
            return .peerFailed(e)
        }
        switch (phase, frame) {
        case (.awaitingAccept, .accept(let a)):
            phase = .sending
            return .startData(a)
        case (.sending, .fileAck(let a)), (.awaitingDone, .fileAck(let a)):
            guard let i = fileIndex[a.fileID] else { return violation("acknowledgement for unknown file id \(a.fileID)") }
            guard acked.insert(i).inserted else { return violation("file id \(a.fileID) acknowledged twice") }
            return .acknowledged(index: i, a)
        case (.sending, .report(let r)), (.awaitingDone, .report(let r)):
            guard !reported else { return violation("a second report") }
            reported = true
            return .hopReport(r)
        case (.awaitingDone, .done(let d)):
            guard allAcknowledged else { return violation("done before every file was acknowledged") }
            phase = .finished
            return .complete(d)
        default:
            return violation("unexpected \(frame.type) frame while \(phase)")
        }
    }

    /// The sender wrote its `end` frame.
    public mutating func endSent() {
        if phase == .sending { phase = .awaitingDone }
    }

    private mutating func violation(_ s: String) -> Action {
        phase = .failed
        return .violation(s)
    }
}

extension SenderMachine.Phase: CustomStringConvertible {
    public var description: String {
        switch self {
        case .awaitingAccept: return "waiting for the receiver to accept the manifest"
        case .sending: return "sending"
        case .awaitingDone: return "waiting for the receiver to confirm the push"
        case .finished: return "finished"
        case .failed: return "failed"
        }
    }
}
