import FTEngine

/// Ends a running push from any thread. The request reaches the push's
/// loop through its offload eventfd, so the loop is never touched from
/// outside. The canceller keeps the offload (and its eventfd) alive, so a
/// late call cannot write to a descriptor the kernel has given to someone
/// else; after the push ended it does nothing.
package struct PushCanceller: Sendable {
    private let offload: Offload
    private let target: UncheckedBox<Weak>

    private final class Weak {
        weak var sender: Sender?
        init(_ s: Sender) { sender = s }
    }

    init(offload: Offload, sender: Sender) {
        self.offload = offload
        target = UncheckedBox(Weak(sender))
    }

    package func cancel() {
        offload.post { [target] in target.value.sender?.cancel() }
    }
}

extension Sender {
    package var canceller: PushCanceller { PushCanceller(offload: offload, sender: self) }

    /// Ends the push as a dropped connection would: the receiver keeps what
    /// arrived as partials, and the next push of the same files resumes.
    func cancel() {
        finish(.cancelled(peer: peer))
    }
}
