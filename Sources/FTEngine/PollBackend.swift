import CURing
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The fallback backend for systems where io_uring is disabled, filtered by
/// seccomp, or refused. It keeps the ring's contract (queue operations, get
/// completions, links, short-transfer rules) over non-blocking syscalls and
/// poll(2), so nothing above the engine knows which backend runs.
public final class PollBackend: IOBackend {
    public let kind = BackendKind.poll
    public var idleSpinNanoseconds: UInt64 = 0
    public private(set) var stats = EngineStats()

    private struct Pending {
        var op: Op
        var userData: UserData
        var chain: UInt64
        var linksNext: Bool
        /// Post no completion on success.
        var quiet = false
        /// Bytes moved so far, for operations that must move all of them.
        var done = 0
        /// poll(2) events this entry waits for; 0 means "try now".
        var waitEvents: Int16 = 0
        var waitFD: CInt = -1
        /// Monotonic deadline of a timeout, in nanoseconds.
        var deadline: UInt64 = 0
        /// A non-blocking connect has been started.
        var started = false
    }

    private var pending: [Pending] = []
    private var completions: [Completion] = []
    private var pollFDs: [pollfd] = []
    private var nextChain: UInt64 = 1
    private var chainOpen = false

    public init() {
        pending.reserveCapacity(64)
        completions.reserveCapacity(64)
        pollFDs.reserveCapacity(64)
    }

    /// Nothing to register: fixed-buffer operations run as plain ones.
    public func registerBuffers(_ buffers: [UnsafeMutableRawBufferPointer]) throws(IOError) {}

    public func adopt(socket fd: CInt) {
        let flags = ft_fcntl(fd, F_GETFL)
        if flags >= 0 { _ = ft_fcntl_int(fd, F_SETFL, flags | O_NONBLOCK) }
    }

    public func queue(_ op: Op, _ userData: UserData, link: Bool, quiet: Bool) {
        if case .cancelFD(let fd) = op {
            // Immediate, as on the ring: every pending op on fd completes now.
            precondition(!link && !chainOpen, "cancel cannot be linked")
            var cancelled: Int32 = 0
            var j = 0
            while j < pending.count {
                if pending[j].op.fd == fd {
                    let victim = pending.remove(at: j)
                    completions.append(Completion(userData: victim.userData, result: -ECANCELED))
                    cancelled += 1
                } else {
                    j += 1
                }
            }
            completions.append(Completion(userData: userData.with(kind: .cancel), result: cancelled > 0 ? cancelled : -ENOENT))
            return
        }
        let chain = chainOpen ? nextChain : { nextChain &+= 1; return nextChain }()
        var p = Pending(op: op, userData: userData.with(kind: op.kind), chain: chain, linksNext: link)
        p.quiet = quiet
        if case .timeout(let ns) = op { p.deadline = monotonicNanoseconds() &+ ns }
        pending.append(p)
        chainOpen = link
    }

    public func run(timeoutNanoseconds: UInt64?, _ handle: (Completion) -> Void) throws(IOError) {
        let start = monotonicNanoseconds()
        while true {
            attemptReady()
            if !completions.isEmpty {
                // Look at the waiting ones too, without waiting: a stream of
                // completions that are always ready (inline sendfile) must
                // not starve operations waiting for readiness.
                if pending.contains(where: { $0.waitEvents != 0 }) {
                    try waitForReadiness(timeoutNanoseconds: 0)
                    attemptReady()
                }
                break
            }
            let now = monotonicNanoseconds()
            var waitNs: UInt64? = timeoutNanoseconds.map { start &+ $0 > now ? start &+ $0 - now : 0 }
            for p in pending where p.deadline != 0 {
                let left = p.deadline > now ? p.deadline - now : 0
                waitNs = min(waitNs ?? left, left)
            }
            if waitNs == 0 && timeoutNanoseconds != nil && start &+ timeoutNanoseconds! <= now { break }
            if idleSpinNanoseconds > 0, waitNs != 0 {
                // Look without sleeping for a while first (see the protocol).
                let until = now + idleSpinNanoseconds
                repeat {
                    try waitForReadiness(timeoutNanoseconds: 0)
                    attemptReady()
                } while completions.isEmpty && monotonicNanoseconds() < until
                if !completions.isEmpty { break }
            }
            try waitForReadiness(timeoutNanoseconds: waitNs)
        }
        let ready = completions
        completions.removeAll(keepingCapacity: true)
        for c in ready {
            stats.record(c)
            handle(c)
        }
    }

    // MARK: - Driving pending operations

    /// Tries every operation that heads its chain and is not waiting.
    private func attemptReady() {
        var i = 0
        var seenChains = Set<UInt64>()
        while i < pending.count {
            let chain = pending[i].chain
            // Only the first remaining entry of a chain may run.
            if !seenChains.insert(chain).inserted || pending[i].waitEvents != 0 {
                i += 1
                continue
            }
            if let result = attempt(&pending[i]) {
                let p = pending.remove(at: i)
                finish(p, result: result, at: i)
                seenChains.remove(chain)
                // The next entry of the chain (now at i) may run at once.
                continue
            }
            i += 1
        }
    }

    private func finish(_ p: Pending, result: Int32, at index: Int) {
        if p.quiet, result >= 0 {
            // Skipped like IOSQE_CQE_SKIP_SUCCESS; a short result still breaks a link below.
        } else if case .sendZC = p.op, result >= 0 {
            // Keep the ring's contract: a result marked "more", then the
            // notification that the buffer is free.
            completions.append(Completion(userData: p.userData, result: result, flags: Completion.more))
            completions.append(Completion(userData: p.userData, result: 0, flags: Completion.notification))
        } else {
            completions.append(Completion(userData: p.userData, result: result))
        }
        if p.linksNext && breaksLink(p.op, result: result) {
            // io_uring cancels the rest of a broken chain.
            var j = index
            while j < pending.count {
                if pending[j].chain == p.chain {
                    let rest = pending.remove(at: j)
                    completions.append(Completion(userData: rest.userData, result: -ECANCELED))
                } else {
                    j += 1
                }
            }
        }
    }

    private func waitForReadiness(timeoutNanoseconds: UInt64?) throws(IOError) {
        pollFDs.removeAll(keepingCapacity: true)
        for p in pending where p.waitEvents != 0 {
            pollFDs.append(pollfd(fd: p.waitFD, events: p.waitEvents, revents: 0))
        }
        let ms: CInt = timeoutNanoseconds.map { CInt(min(($0 + 999_999) / 1_000_000, 60_000)) } ?? -1
        stats.enters &+= 1
        let r = pollFDs.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), ms) }
        if r < 0 {
            if errno == EINTR { return }
            throw IOError(Errno(rawValue: errno), "poll(2) in the fallback engine")
        }
        let now = monotonicNanoseconds()
        for k in pending.indices {
            if pending[k].deadline != 0, pending[k].deadline <= now {
                pending[k].waitEvents = 0
                continue
            }
            guard pending[k].waitEvents != 0 else { continue }
            for pfd in pollFDs where pfd.fd == pending[k].waitFD && pfd.revents != 0 {
                pending[k].waitEvents = 0
            }
        }
    }

    /// One non-blocking attempt. nil: not finished (now waiting on an fd).
    private func attempt(_ p: inout Pending) -> Int32? {
        switch p.op {
        case .nop:
            return 0
        case .accept(let fd):
            let r = ft_accept4(fd, FT_SOCK_CLOEXEC)
            return r >= 0 ? r : wouldBlock(&p, fd, CInt(POLLIN))
        case .connect(let fd, let address, let length):
            if !p.started {
                p.started = true
                if Glibc.connect(fd, address, length) == 0 { return 0 }
                if errno != EINPROGRESS { return -errno }
                return wait(&p, fd, CInt(POLLOUT))
            }
            var err: CInt = 0
            var len = socklen_t(MemoryLayout<CInt>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            return -err
        case .recv(let fd, let buffer, let length, let flags):
            return transfer(&p, fd, CInt(POLLIN), all: flags & CInt(MSG_WAITALL) != 0, length: length) { done in
                Glibc.recv(fd, buffer + done, length - done, (flags & ~CInt(MSG_WAITALL)) | CInt(MSG_DONTWAIT))
            }
        case .send(let fd, let buffer, let length, let flags):
            return transfer(&p, fd, CInt(POLLOUT), all: true, length: length) { done in
                Glibc.send(fd, buffer + done, length - done, flags | CInt(MSG_DONTWAIT) | CInt(MSG_NOSIGNAL))
            }
        case .recvmsg(let fd, let message, let flags):
            let r = Glibc.recvmsg(fd, message, flags | CInt(MSG_DONTWAIT))
            return r >= 0 ? Int32(r) : wouldBlock(&p, fd, CInt(POLLIN))
        case .sendmsg(let fd, let message, let flags):
            let r = Glibc.sendmsg(fd, message, flags | CInt(MSG_DONTWAIT) | CInt(MSG_NOSIGNAL))
            return r >= 0 ? Int32(r) : wouldBlock(&p, fd, CInt(POLLOUT))
        case .read(let fd, let buffer, let length, let offset):
            if offset == Op.noOffset, !p.started {
                // A stream (stdin, a pipe): wait until it has data so the
                // read cannot block the loop.
                p.started = true
                return wait(&p, fd, CInt(POLLIN))
            }
            let r = offset == Op.noOffset ? Glibc.read(fd, buffer, length) : pread(fd, buffer, length, off_t(offset))
            return r >= 0 ? Int32(r) : wouldBlock(&p, fd, CInt(POLLIN))
        case .readFixed(let fd, let buffer, let length, let offset, _):
            let r = pread(fd, buffer, length, off_t(offset))
            return r >= 0 ? Int32(r) : wouldBlock(&p, fd, CInt(POLLIN))
        case .sendZC(let fd, let buffer, let length, let flags, _):
            // A plain send; finish() adds the notification a zero-copy send gives.
            return transfer(&p, fd, CInt(POLLOUT), all: true, length: length) { done in
                Glibc.send(fd, buffer + done, length - done, flags | CInt(MSG_DONTWAIT) | CInt(MSG_NOSIGNAL))
            }
        case .write(let fd, let buffer, let length, let offset):
            return transfer(&p, fd, CInt(POLLOUT), all: true, length: length) { done in
                offset == Op.noOffset
                    ? Glibc.write(fd, buffer + done, length - done)
                    : pwrite(fd, buffer + done, length - done, off_t(offset) + off_t(done))
            }
        case .splice(let input, let inOff, let output, let outOff, let length, let flags):
            // Into a socket, a blocking splice moves everything; out of a
            // socket it returns what was there. Mirror both.
            let outIsSocket = isSocket(output)
            let waitFD = outIsSocket ? output : input
            let events = CInt(outIsSocket ? POLLOUT : POLLIN)
            return transfer(&p, waitFD, events, all: outIsSocket, length: length) { done in
                var i = inOff < 0 ? inOff : inOff + Int64(done)
                var o = outOff < 0 ? outOff : outOff + Int64(done)
                return withOptionalPointer(&i, inOff >= 0) { ip in
                    withOptionalPointer(&o, outOff >= 0) { op in
                        ft_splice(input, ip, output, op, length - done, flags | FT_SPLICE_F_NONBLOCK)
                    }
                }
            }
        case .tee(let input, let output, let length, let flags):
            // Pipe to pipe: what fits now, waiting for room in the output.
            return transfer(&p, output, CInt(POLLOUT), all: false, length: length) { _ in
                ft_tee(input, output, length, flags | FT_SPLICE_F_NONBLOCK)
            }
        case .sendfile(let sock, let file, let offset, let length, let header, let headerLength):
            // `done` counts header bytes first, then payload bytes.
            let r = transfer(&p, sock, CInt(POLLOUT), all: true, length: headerLength + length) { done in
                if done < headerLength {
                    return Glibc.send(sock, header! + done, headerLength - done, CInt(MSG_MORE | MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                var off = offset + Int64(done - headerLength)
                return ft_sendfile(sock, file, &off, headerLength + length - done)
            }
            guard let r else { return nil }
            return r < 0 ? r : max(0, r - Int32(headerLength))
        case .poll(let fd, let events):
            if !p.started {
                p.started = true
                return wait(&p, fd, CInt(truncatingIfNeeded: events))
            }
            var pfd = pollfd(fd: fd, events: Int16(truncatingIfNeeded: events), revents: 0)
            _ = Glibc.poll(&pfd, 1, 0)
            return pfd.revents != 0 ? Int32(pfd.revents) : wait(&p, fd, CInt(truncatingIfNeeded: events))
        case .timeout:
            return monotonicNanoseconds() >= p.deadline ? -ETIME : nil
        case .cancelFD:
            fatalError("cancelFD completes in queue()")
        case .shutdown(let fd, let how):
            return Glibc.shutdown(fd, how) == 0 ? 0 : -errno
        }
    }

    /// Runs `call` until `length` bytes moved (or, without `all`, until the
    /// first bytes), waiting on `fd` when it would block.
    private func transfer(
        _ p: inout Pending, _ fd: CInt, _ events: CInt, all: Bool, length: Int, _ call: (Int) -> Int
    ) -> Int32? {
        while p.done < length || length == 0 {
            let r = call(p.done)
            if r > 0 {
                p.done += r
                if !all { return Int32(p.done) }
            } else if r == 0 {
                return Int32(p.done)
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                return wait(&p, fd, events)
            } else {
                return p.done > 0 ? Int32(p.done) : -errno
            }
        }
        return Int32(p.done)
    }

    private func wouldBlock(_ p: inout Pending, _ fd: CInt, _ events: CInt) -> Int32? {
        errno == EAGAIN || errno == EINTR ? wait(&p, fd, events) : -errno
    }

    private func wait(_ p: inout Pending, _ fd: CInt, _ events: CInt) -> Int32? {
        p.waitFD = fd
        p.waitEvents = Int16(truncatingIfNeeded: events)
        return nil
    }

    private func isSocket(_ fd: CInt) -> Bool {
        var st = stat()
        return fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK
    }
}

private func withOptionalPointer<R>(_ v: inout Int64, _ use: Bool, _ body: (UnsafeMutablePointer<Int64>?) -> R) -> R {
    if use { return withUnsafeMutablePointer(to: &v) { body($0) } }
    return body(nil)
}

extension Op {
    /// The descriptor an operation works on, for cancellation by fd.
    var fd: CInt? {
        switch self {
        case .accept(let fd), .connect(let fd, _, _), .recv(let fd, _, _, _), .send(let fd, _, _, _),
             .recvmsg(let fd, _, _), .sendmsg(let fd, _, _), .read(let fd, _, _, _), .write(let fd, _, _, _),
             .readFixed(let fd, _, _, _, _), .sendZC(let fd, _, _, _, _),
             .poll(let fd, _), .shutdown(let fd, _):
            return fd
        case .splice(let input, _, let output, _, _, _):
            return isSocketLike(input) ? input : output
        case .sendfile(let sock, _, _, _, _, _):
            return sock
        case .nop, .timeout, .cancelFD, .tee:
            return nil
        }
    }
}

private func isSocketLike(_ fd: CInt) -> Bool {
    var st = stat()
    return fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK
}

/// CLOCK_MONOTONIC in nanoseconds.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
