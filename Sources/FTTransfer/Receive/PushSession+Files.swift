import CURing
import FTEngine
import FTWire
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where a push's entries land: sinks beneath the destination, verified
/// before they take their final names; symlinks and hard links made
/// beneath it, never followed.
extension PushSession {
    func refusal(_ code: ErrorFrame.Code, _ message: String) -> TransferError {
        .refused(ErrorFrame(code, message), peer: peer)
    }

    /// The directory `path` goes in, opened from the destination's fd with
    /// `RESOLVE_BENEATH` each time it is asked for (one lookup per call:
    /// a directory moved out of the destination is not found again).
    /// `cache` keeps the answers for one batch review. Nil: it does not
    /// exist (only without `create`).
    func parentDirectory(of path: PeerPath, create: Bool, cache: inout [PeerPath: Directory]) throws(IOError) -> Directory? {
        do {
            let (d, new) = try server.destination.parent(of: placed(path), create: create, cache: &cache)
            if new, let parent = path.parent { sweep(d, parent) }
            return d
        } catch where !create && error.errno == .noSuchFileOrDirectory {
            return nil
        }
    }

    func parentDirectory(of path: PeerPath) throws(IOError) -> Directory {
        var none: [PeerPath: Directory] = [:]
        return try parentDirectory(of: path, create: true, cache: &none) ?? server.destination
    }

    /// Whether `dir` is still where `path`'s parent is beneath the
    /// destination (a local user may have moved it out meanwhile).
    func stillBeneath(_ dir: Directory, for path: PeerPath) -> Bool {
        guard let parent = placed(path).parent else { return true }
        guard let now = try? server.destination.openDirectory(parent.components[...], create: false).0,
              let a = now.identity, let b = dir.identity else { return false }
        return a == b
    }

    /// Stale partials go once per directory and session (the set is
    /// bounded: past it a directory may be swept twice, which is harmless).
    /// On this session's own queue: the sweep reads the whole directory,
    /// and a shared one of 100,000 entries held the loop for 62 ms. It
    /// takes only partials a day old, never one this push writes. None
    /// once the push is failing: its directories' metadata may be going
    /// on. None in a
    /// directory this push made (in a stage, or open and made here): no
    /// earlier push left anything there. Sweeping a stage's 100
    /// directories as 100,000 files were stored was 1.9% of the
    /// receiver's samples.
    private func sweep(_ dir: Directory, _ path: PeerPath) {
        guard !connection.isClosing, stage(of: path) == nil, !madeOpenDirs.contains(path) else { return }
        if swept.count > 4096 { swept.removeAll() }
        guard swept.insert(path.description).inserted else { return }
        let maxAge = config.keepPartialHours * 3600
        writes.sent(.removal)
        server.offload.run(on: ownQueue, { Partial.sweep(dir, olderThan: maxAge) }) { [weak self, writes] n in
            defer { writes.back(.removal) }
            guard let self else { return }
            if n > 0 { server.logger.info("removed \(n) partial files older than \(Int(config.keepPartialHours)) h from \(dir.displayPath)") }
        }
    }

    func sink(for fileID: UInt32) throws(TransferError) -> FileSink {
        if let s = sinks[fileID] { return s }
        guard let e = machine.entry(fileID) else { throw .protocolViolation("no entry \(fileID)", peer: peer) }
        let display = Escape.forDisplay(e.path.description)
        let s: FileSink
        if config.toStdout {
            s = FileSink(stdoutFor: display, verify: machine.verify)
        } else {
            do {
                let dir = try parentDirectory(of: e.path)
                if e.entry.kind == .file, let copy = copies.removeValue(forKey: fileID) {
                    s = try FileSink(directory: dir, entry: e.entry, display: display, verify: machine.verify, patch: copy)
                } else if e.entry.kind == .file {
                    s = try FileSink(directory: dir, entry: e.entry, display: display, verify: machine.verify,
                                     resume: held.removeValue(forKey: fileID))
                } else {
                    s = try FileSink(directory: dir, finalName: e.path.name, display: display, size: nil, verify: machine.verify)
                }
            } catch {
                throw .io(error)
            }
        }
        sinks[fileID] = s
        return s
    }

    func store(_ fileID: UInt32, _ offset: UInt64, _ length: UInt32, on conn: ReceiverSession) {
        let sink: FileSink
        do throws(TransferError) {
            sink = try self.sink(for: fileID)
        } catch {
            fail(error, frame: error.frame)
            return
        }
        let path: PayloadIntake.Path = conn === connection ? intakePath : streamPath
        conn.store(Payload(id: fileID, sink: sink, start: offset, length: UInt64(length)), path: path,
                   relay: conn === connection ? link : nil)
    }

    /// Zeros that did not travel: recorded, never written (stdout gets
    /// them written out, as a pipe has no holes).
    func hole(_ fileID: UInt32, _ range: Range<UInt64>) {
        do throws(TransferError) {
            let s = try sink(for: fileID)
            if s.isStdout {
                try writeZeros(UInt64(range.count), to: s)
            }
            do throws(IOError) { try s.didSkipHole(range) } catch { throw .io(error) }
        } catch {
            fail(error, frame: error.frame)
        }
    }

    private func writeZeros(_ count: UInt64, to s: FileSink) throws(TransferError) {
        let zeros = [UInt8](repeating: 0, count: Int(min(count, 1 << 16)))
        var left = count
        while left > 0 {
            let n = Int(min(left, UInt64(zeros.count)))
            let w = zeros.withUnsafeBytes { write(s.fd, $0.baseAddress, n) }
            if w < 0, errno == EINTR { continue }
            guard w > 0 else { throw .io(IOError(Errno(rawValue: errno), "write", "stdout")) }
            left -= UInt64(w)
        }
    }

    /// A payload is in its file.
    func payloadDone(_ p: Payload) {
        if machine.parallel, case .finish(let fileID) = machine.chunkStored(id: p.id) {
            finishAndSettle(fileID)
        }
    }

    /// Verifies and commits entry `fileID`, then settles it.
    func finishAndSettle(_ fileID: UInt32) {
        guard let e = machine.entry(fileID), let trailer = e.trailer else { return }
        if trailer.unreadable {
            sinks.removeValue(forKey: fileID)?.discard(keep: false)
            held[fileID] = nil
            settle(fileID, .skipped)
            return
        }
        do throws(TransferError) {
            let s = try sink(for: fileID)
            if s.hashesAtEnd, s.endDigest == nil {
                hashWhole(fileID, s)
                return
            }
            if let digest = s.digest() {
                guard let expected = trailer.digest, digest.constantTimeEquals(expected) else {
                    let theirs = trailer.digest?.hex ?? "none"
                    throw refusal(.hashMismatch,
                        "'\(s.display)' failed verification: received bytes hash to \(digest.hex), the sender's hash is \(theirs); nothing was written under that name")
                }
            }
            do {
                try s.commit(entry: e.entry, overwrite: config.overwrite, owner: ownerOf(e.entry) != nil,
                             stillBeneath: { stillBeneath($0, for: e.path) })
            } catch {
                throw refusal(error.errno == .fileExists ? .exists : .io, error.description)
            }
            sinks[fileID] = nil
            let digest = s.digest() ?? .zero
            if s.digest() != nil, digests.count < ProgressEvent.Summary.digestCap { digests.append((s.display, digest)) }
            if e.entry.flags.contains(.linkSource), let dir = s.directory, let st = try? dir.status(of: e.path.name) {
                linkInodes[fileID] = (UInt64(st.st_dev), UInt64(st.st_ino))
            }
            if e.entry.size == 0 || e.entry.kind == .stdin {
                _ = meter.advance(by: 0, path: s.display, fileBytes: trailer.size, fileSize: trailer.size)
            }
            server.emit(.fileDone(.init(session: id, path: s.display, bytes: trailer.size, digest: s.digest())))
            let resumed: UInt64 = {
                if case .resumeAfter(let n) = e.decision { return n }
                if case .patch(let reuse) = e.decision {
                    // Kept chunks did not travel.
                    var chunk: UInt64 = 0
                    if case .chunks(let c, _)? = e.offer { chunk = UInt64(c) }
                    return reuse.enumerated().reduce(0) { sum, k in
                        guard k.element else { return sum }
                        let lo = UInt64(k.offset) * chunk
                        return sum + (lo < trailer.size ? min(chunk, trailer.size - lo) : 0)
                    }
                }
                return 0
            }()
            let arrived = trailer.size - min(trailer.size, resumed + s.holeBytes)
            holeBytes += s.holeBytes
            settle(fileID, .committed, digest: digest, bytes: arrived)
        } catch {
            fail(error, frame: error.frame)
        }
    }

    /// A patched file, complete: hashed whole aside from the ordered offload
    /// jobs (it may be gigabytes), then verified and committed like any other.
    private func hashWhole(_ fileID: UInt32, _ s: FileSink) {
        guard !s.endHashStarted, let size = machine.entry(fileID)?.entry.size else { return }
        s.endHashStarted = true
        let fd = s.fd
        server.offload.runAside({ () -> Result<Digest128, IOError> in
            let hasher = StreamHasher()
            do throws(IOError) { try hasher.update(fd: fd, offset: 0, length: size) } catch { return .failure(error) }
            return .success(hasher.digest())
        }) { [weak self, s] result in
            guard let self, !connection.isClosing, sinks[fileID] === s else { return }
            switch result {
            case .success(let d):
                s.endDigest = d
                finishAndSettle(fileID)
            case .failure(let error):
                fail(.io(error), frame: TransferError.io(error).frame)
            }
        }
    }

    /// A small-files frame's files, each verified in memory before any
    /// byte is written, then created complete under its name on the
    /// offload thread (`SmallStoreJob`); they settle when it is done. To
    /// stdout they go at once, in order.
    func storeSmall(_ arrivals: [SmallArrival]) {
        var files: [SmallStoreJob.File] = []
        files.reserveCapacity(arrivals.count)
        var total = 0
        var staged: [Stage] = []
        for a in arrivals {
            guard let e = machine.entry(a.id) else { continue }
            #if DEBUG
            var a = a
            a.file.bytes.withUnsafeMutableBytes { ReceiveFault.corrupt($0, at: 0) }
            #endif
            let display = Escape.forDisplay(e.path.description)
            do throws(TransferError) {
                let digest = try verified(a, display)
                if config.toStdout {
                    let s = try sink(for: a.id)
                    try writeAll(a.file.bytes, to: s)
                    sinks[a.id] = nil
                    stored(a.id, display, UInt64(a.file.bytes.count), digest, inode: nil)
                    guard !connection.isClosing else { return }
                    continue
                }
                let owner = ownerOf(e.entry).map { SmallStoreJob.Owner(uid: $0.uid, gid: $0.gid) }
                let s = stage(of: e.path)
                staged.addOnce(s)
                files.append(SmallStoreJob.File(id: a.id, bytes: a.file.bytes, entry: e.entry, path: e.path,
                                                stage: s?.path, display: display, owner: owner,
                                                wantsInode: e.entry.flags.contains(.linkSource), digest: digest))
                total += a.file.bytes.count
            } catch {
                fail(error, frame: error.frame)
                return
            }
        }
        guard !files.isEmpty else { return }
        smallBytesInFlight += total
        let overwrite = config.overwrite
        let destination = server.destination
        let offload = server.offload
        writes.run(.store, into: staged, { done in
            offload.runSideBySide({ [files] in SmallStoreJob.run(files, in: destination, overwrite: overwrite) }, then: done)
        }) { [weak self] (result: SmallStoreJob.Result) in
            guard let self else { return }
            smallBytesInFlight -= total
            for (path, dir) in result.directories { sweep(dir, path) }
            // By index: a `File` copied out of the array costs a retain and
            // a release of each of its references.
            for i in result.outcomes.indices {
                guard !connection.isClosing else { return }
                switch result.outcomes[i] {
                case .stored(let inode):
                    stored(files[i].id, files[i].display, UInt64(files[i].bytes.count), files[i].digest, inode: inode)
                case .failed(let error):
                    let e = refusal(error.errno == .fileExists ? .exists : .io, error.description)
                    fail(e, frame: e.frame)
                    return
                }
            }
            resumeReading()
        }
    }

    /// The frame's bytes for file `a`, checked against the sender's hash;
    /// the digest to report (nil without verification).
    private func verified(_ a: SmallArrival, _ display: String) throws(TransferError) -> Digest128? {
        guard machine.verify else { return nil }
        let mine = a.file.bytes.withUnsafeBytes { StreamHasher.hash($0) }
        guard let theirs = a.file.digest, mine.constantTimeEquals(theirs) else {
            throw refusal(.hashMismatch, "'\(display)' failed verification: received bytes hash to \(mine.hex), the sender's hash is \(a.file.digest?.hex ?? "none"); nothing was written under that name")
        }
        return mine
    }

    /// A small file is under its name (or written to stdout).
    private func stored(_ fileID: UInt32, _ display: String, _ bytes: UInt64, _ digest: Digest128?,
                        inode: (dev: UInt64, ino: UInt64)?) {
        if let inode { linkInodes[fileID] = inode }
        if let digest, digests.count < ProgressEvent.Summary.digestCap { digests.append((display, digest)) }
        if let ev = meter.advance(by: bytes, path: display, fileBytes: bytes, fileSize: bytes) {
            server.emit(ev)
        }
        server.emit(.fileDone(.init(session: id, path: display, bytes: bytes, digest: digest)))
        settle(fileID, .committed, digest: digest ?? .zero, bytes: bytes)
    }

    private func writeAll(_ bytes: [UInt8], to s: FileSink) throws(TransferError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(s.fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw .io(IOError(Errno(rawValue: errno), "write", "stdout")) }
            done += n
        }
    }

    /// A symlink entry: made beneath the destination (never followed), or
    /// skipped by this receiver's link policy. Its digest is its target
    /// text's, read back. Nil when the push fails.
    func makeSymlink(_ e: IncomingEntry) -> (BatchAck.Status, Digest128)? {
        let display = Escape.forDisplay(e.path.description)
        guard machine.links.keeps(target: e.entry.linkTarget, at: e.path) else {
            server.logger.warning("session \(id): skipping symlink '\(display)' -> '\(Escape.forDisplay(bytes: e.entry.linkTarget))': it points outside the pushed tree (ft recv --links all keeps such links)")
            return (.skipped, .zero)
        }
        do throws(IOError) {
            let dir = try parentDirectory(of: e.path)
            do throws(IOError) {
                try dir.makeSymlink(e.path.name, target: e.entry.linkTarget)
            } catch where error.errno == .fileExists && config.overwrite {
                let temp = ".ft-" + randomHex(8) + ".link"
                try dir.makeSymlink(temp, target: e.entry.linkTarget)
                do { try dir.rename(temp, to: e.path.name, replace: true) } catch {
                    dir.remove(temp)
                    throw error
                }
            }
            dir.applyLinkMetadata(e.path.name, mtimeSeconds: e.entry.mtimeSeconds, mtimeNanoseconds: e.entry.mtimeNanoseconds,
                                  owner: ownerOf(e.entry))
            let back = dir.readLink(e.path.name) ?? []
            return (.committed, back.withUnsafeBytes { StreamHasher.hash($0) })
        } catch {
            let e = refusal(error.errno == .fileExists ? .exists : .io, error.description)
            fail(e, frame: e.frame)
            return nil
        }
    }

    /// Entry `fileID` is another name for a file this push committed: a
    /// hard link beneath the destination, after checking the name still
    /// holds the inode the push wrote.
    func makeHardLink(_ fileID: UInt32, to sourcePath: PeerPath) {
        guard let e = machine.entry(fileID) else { return }
        let display = Escape.forDisplay(e.path.description)
        guard let inode = linkInodes[e.entry.linkTo] else {
            // Its source was left out (the sender could not read it).
            server.logger.warning("session \(id): skipping hard link '\(display)': the file it names did not arrive")
            settle(fileID, .skipped)
            return
        }
        do throws(IOError) {
            // The link is made from an fd of the inode the push wrote, not
            // from the source's name, which a local user may swap meanwhile.
            let sourceDir = try parentDirectory(of: sourcePath)
            let changed = IOError(.noSuchFileOrDirectory, "refusing to link", "\(display) (its source '\(Escape.forDisplay(sourcePath.description))' was changed during the push)")
            guard let source = try? sourceDir.open(sourcePath.name, flags: FT_O_PATH) else { throw changed }
            var st = stat()
            guard fstat(source.raw, &st) == 0, UInt64(st.st_dev) == inode.dev, UInt64(st.st_ino) == inode.ino,
                  st.st_mode & S_IFMT == S_IFREG else { throw changed }
            let dir = try parentDirectory(of: e.path)
            do throws(IOError) {
                try dir.link(anonymous: source.raw, as: e.path.name)
            } catch where error.errno == .fileExists && config.overwrite {
                try dir.commit(source.raw, temp: nil, as: e.path.name, replace: true)
            }
        } catch {
            let r = refusal(error.errno == .fileExists ? .exists : .io, error.description)
            fail(r, frame: r.frame)
            return
        }
        settle(fileID, .committed)
    }
}
