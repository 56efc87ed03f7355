import FTWire

/// The receiver's rules that depend on its settings and on what is already
/// in the destination, with no I/O: the driver looks, the policy decides.
package struct ReceiverPolicy: Sendable {
    package var overwrite = false
    package var toStdout = false
    /// Senders prove a code (a receiver that takes anyone never relays).
    package var hasCode = true
    package var handshakeTimeoutSeconds = 10.0
    package var idleTimeoutSeconds = 60.0
    package var maxSessions = 128
    /// For messages: the destination as the user named it.
    package var destination = "."

    package init() {}

    /// What stands at an entry's path in the destination.
    package enum Existing: Sendable, Equatable {
        case directory
        case notDirectory
    }

    /// What the receiver's copy at an entry's path is, as far as a quick
    /// look tells: enough to call a file identical without reading it.
    package struct Found: Sendable, Equatable {
        package var existing: Existing
        package var isRegularFile: Bool
        package var size: UInt64
        package var mtimeSeconds: Int64
        package var mtimeNanoseconds: UInt32
        /// A symlink's target, read when the entry is a symlink too.
        package var linkTarget: [UInt8]?
        /// For a hard-link entry: whether this is already the inode of the
        /// file it links to.
        package var sameInodeAsSource = false
        package init(existing: Existing, isRegularFile: Bool, size: UInt64, mtimeSeconds: Int64, mtimeNanoseconds: UInt32,
                    linkTarget: [UInt8]? = nil, sameInodeAsSource: Bool = false) {
            self.existing = existing
            self.isRegularFile = isRegularFile
            self.size = size
            self.mtimeSeconds = mtimeSeconds
            self.mtimeNanoseconds = mtimeNanoseconds
            self.linkTarget = linkTarget
            self.sameInodeAsSource = sameInodeAsSource
        }
    }

    package enum Verdict: Equatable, Sendable {
        /// Write the entry.
        case proceed
        /// The receiver has it, identical by size and mtime: skip it (a push
        /// that was cut off, pushed again, goes on where it stopped).
        case identical
        /// Same size, and the push asked for content checks (`--checksum`):
        /// offer the copy's digest; the sender says whether it is the same.
        case compareDigest
        /// A changed file this receiver may replace, big enough to patch:
        /// offer chunk digests (`chunkSize` each) of the copy.
        case patch(chunkSize: UInt32)
        case refuse(ErrorFrame)
    }

    /// What the push asked for, from its push-info.
    package struct SyncRequest: Equatable, Sendable {
        package var sync = false
        package var checksum = false
        package init(sync: Bool = false, checksum: Bool = false) {
            self.sync = sync
            self.checksum = checksum
        }
    }

    /// Files smaller than this are sent whole: their chunk list would cost
    /// about as much as the file.
    package static let patchMinimum: UInt64 = 1 << 20

    /// Chunk size for patching a file of `size` bytes: 1 MiB, doubled until
    /// the file has at most 16,384 chunks (256 KiB of digests). 1 MiB keeps
    /// a small change to one or two chunks of payload, and hashing the copy
    /// costs the same whatever the chunk size.
    package static func patchChunkSize(for size: UInt64) -> UInt32 {
        var chunk: UInt64 = 1 << 20
        while size / chunk >= 16_384 { chunk <<= 1 }
        return UInt32(chunk)
    }

    /// What to do with `entry` given what stands at its path (nil: nothing).
    package func verdict(_ entry: ManifestEntry, _ name: @autoclosure () -> String, found: Found?, request: SyncRequest = SyncRequest()) -> Verdict {
        guard let found else { return .proceed }
        let quickMatch = found.size == entry.size && found.mtimeSeconds == entry.mtimeSeconds
            && found.mtimeNanoseconds == entry.mtimeNanoseconds
        switch entry.kind {
        case .file where found.isRegularFile && request.checksum && found.size == entry.size:
            return .compareDigest
        case .file where found.isRegularFile && !request.checksum && quickMatch:
            return .identical
        case .file where found.isRegularFile && request.sync && overwrite
                         && found.size >= Self.patchMinimum && entry.size >= Self.patchMinimum:
            return .patch(chunkSize: Self.patchChunkSize(for: found.size))
        case .symlink where found.linkTarget == entry.linkTarget:
            return .identical
        case .hardlink where found.sameInodeAsSource:
            return .identical
        default:
            break
        }
        if let e = conflict(entry.kind, name(), existing: found.existing) { return .refuse(e) }
        return .proceed
    }

    /// Why a push cannot have `entry` at `path`, given what is there.
    package func conflict(_ kind: ManifestEntry.Kind, _ name: String, existing: Existing) -> ErrorFrame? {
        switch (kind, existing) {
        case (.directory, .directory):
            return nil
        case (.directory, .notDirectory):
            return ErrorFrame(.exists, "'\(name)' exists and is not a directory")
        case (.file, .directory), (.stdin, .directory), (.symlink, .directory), (.hardlink, .directory):
            return ErrorFrame(.exists, "'\(name)' exists as a directory")
        case (.file, .notDirectory), (.stdin, .notDirectory), (.symlink, .notDirectory), (.hardlink, .notDirectory):
            guard !overwrite else { return nil }
            return ErrorFrame(.exists, "'\(name)' exists in \(destination); the receiver keeps it (run ft recv with --overwrite to replace)")
        }
    }

    /// A stdout receiver takes exactly one file or stdin entry.
    package func stdoutRefusal(entries: Int, dataEntries: Int) -> ErrorFrame? {
        guard toStdout, entries != 1 || dataEntries != 1 else { return nil }
        return ErrorFrame(.refused, "this receiver writes one file to stdout, but the push has \(entries) entries")
    }

    package func spaceRefusal(needed: UInt64, free: UInt64) -> ErrorFrame? {
        guard needed > free else { return nil }
        return ErrorFrame(.noSpace, "push needs \(ByteCount.format(needed)) but \(destination) has \(ByteCount.format(free)) free")
    }

    /// Why this receiver does not relay a chain push onward, or nil.
    package func relayRefusal(encrypted: Bool, dataStreams: Bool) -> ErrorFrame? {
        let why: String? = !hasCode
            ? "this receiver accepts anyone (--no-auth), so it does not relay: anyone could aim it at other hosts"
            : toStdout ? "this receiver writes to stdout and does not relay"
            : encrypted ? "encrypted pushes are not relayed"
            : dataStreams ? "a chain push travels on one stream; drop -P" : nil
        return why.map { ErrorFrame(.refused, $0) }
    }

    package func sessionLimitRefusal(active: Int) -> ErrorFrame? {
        guard active >= maxSessions else { return nil }
        return ErrorFrame(.busy, "the receiver is serving \(maxSessions) pushes, its limit; try again later")
    }

    /// Whether a session that failed this way keeps what arrived for a
    /// resume. A dropped connection or a stall does; a refusal, a broken
    /// protocol or a bad hash does not (those bytes are suspect). A chain
    /// host never keeps: a later pass sends it the whole stream again, and
    /// a kept, locked partial would only make that pass find the file busy.
    package func keepsPartials(after error: TransferError, chain: Bool) -> Bool {
        if chain { return false }
        switch error {
        case .refused, .protocolViolation, .verification: return false
        default: return true
        }
    }

    /// Seconds a connection may go without progress: short while it has
    /// not finished its handshake (a stranger's connection), long after.
    package func timeoutSeconds(handshaking: Bool) -> Double {
        handshaking ? handshakeTimeoutSeconds : idleTimeoutSeconds
    }

    /// How long a push may sit idle: `--timeout`, or while every session
    /// slot is taken the handshake's shorter clock, so idle pushes cannot
    /// keep the receiver full.
    package func idleLimitSeconds(active: Int) -> Double {
        active >= maxSessions ? min(idleTimeoutSeconds, handshakeTimeoutSeconds) : idleTimeoutSeconds
    }
}
