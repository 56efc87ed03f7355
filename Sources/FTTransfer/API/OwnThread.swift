import Dispatch

/// Runs blocking work on a thread of its own and resumes the caller when
/// it is done. A push or a receiver lives on one thread from its birth:
/// its io_uring ring is set up for a single issuer (SINGLE_ISSUER,
/// DEFER_TASKRUN), so only the thread that made the ring may submit to it
/// and wait on it. The work never runs on Swift's cooperative pool, which
/// a loop blocked in `io_uring_enter` would starve.
func onOwnThread<T: Sendable>(_ label: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        DispatchQueue(label: label).async { continuation.resume(returning: body()) }
    }
}
