import FTEngine
import FTWire
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Where a push's bytes land: sinks beneath the destination, verified
/// before they take their final names.
extension PushSession {
    func refusal(_ code: ErrorFrame.Code, _ message: String) -> TransferError {
        .refused(ErrorFrame(code, message), peer: peer)
    }

    func sink(for index: Int) throws(TransferError) -> FileSink {
        if let s = sinks[index] { return s }
        let e = machine.entries[index]
        let display = Escape.forDisplay(e.path.description)
        let size: UInt64? = e.entry.kind == .file ? e.entry.size : nil
        let s: FileSink
        if config.toStdout {
            s = FileSink(stdoutFor: display, verify: machine.verify)
        } else {
            do {
                let dir = try parentDirectory(of: e.path)
                if e.entry.kind == .file {
                    s = try FileSink(directory: dir, entry: e.entry, display: display, verify: machine.verify,
                                     resume: held.removeValue(forKey: index))
                } else {
                    s = try FileSink(directory: dir, finalName: e.path.name, display: display, size: size, verify: machine.verify)
                }
            } catch {
                throw .io(error)
            }
        }
        sinks[index] = s
        return s
    }

    func parentDirectory(of path: PeerPath) throws(IOError) -> Directory {
        guard let parent = path.parent else {
            sweep(server.destination, key: "")
            return server.destination
        }
        if let d = directoryCache[parent] { return d }
        let (d, _) = try server.destination.openDirectory(parent.components[...], create: true)
        if directoryCache.count > 1024 { directoryCache.removeAll() }
        directoryCache[parent] = d
        sweep(d, key: parent.description)
        return d
    }

    /// The parent directory of `path` if it exists, after sweeping stale
    /// partials from it (once per directory and session).
    func existingParent(of path: PeerPath) throws(IOError) -> Directory {
        if let parent = path.parent, directoryCache[parent] == nil {
            let (d, _) = try server.destination.openDirectory(parent.components[...], create: false)
            directoryCache[parent] = d
        }
        let dir = path.parent.flatMap { directoryCache[$0] } ?? server.destination
        sweep(dir, key: path.parent?.description ?? "")
        return dir
    }

    private func sweep(_ dir: Directory, key: String) {
        guard swept.insert(key).inserted else { return }
        let n = Partial.sweep(dir, olderThan: config.keepPartialHours * 3600)
        if n > 0 { server.logger.info("removed \(n) partial files older than \(Int(config.keepPartialHours)) h from \(dir.displayPath)") }
    }

    /// Every byte of entry `index` is in: verify it, commit it under its
    /// name, and acknowledge it.
    func finish(_ index: Int) throws(TransferError) {
        let e = machine.entries[index]
        guard let trailer = e.trailer else { preconditionFailure("finish before the trailer") }
        let s = try sink(for: index)
        if let digest = s.digest() {
            guard let expected = trailer.digest, digest.constantTimeEquals(expected) else {
                let theirs = trailer.digest?.hex ?? "none"
                throw refusal(.hashMismatch,
                    "'\(s.display)' failed verification: received bytes hash to \(digest.hex), the sender's hash is \(theirs); nothing was written under that name")
            }
        }
        do {
            try s.commit(entry: e.entry, overwrite: config.overwrite)
        } catch {
            throw refusal(error.errno == .fileExists ? .exists : .io, error.description)
        }
        sinks[index] = nil
        let digest = s.digest()
        if let digest { digests.append((s.display, digest)) }
        channel.enqueue(.fileAck(FileAck(fileID: e.entry.fileID, status: .committed, digest: digest ?? .zero)))
        channel.flush()
        if e.entry.size == 0 || e.entry.kind == .stdin {
            _ = meter.advance(by: 0, path: s.display, fileBytes: trailer.size, fileSize: trailer.size)
        }
        server.emit(.fileDone(.init(session: id, path: s.display, bytes: trailer.size, digest: digest)))
    }

    /// A small file that came whole: verified in memory before any byte is
    /// written, then created complete under its name.
    func storeWhole(_ a: SmallArrival) throws(TransferError) {
        let e = machine.entries[a.index]
        let display = Escape.forDisplay(e.path.description)
        var digest: Digest128?
        if machine.verify {
            let mine = a.file.bytes.withUnsafeBytes { StreamHasher.hash($0) }
            guard let theirs = a.file.digest, mine.constantTimeEquals(theirs) else {
                throw refusal(.hashMismatch, "'\(display)' failed verification: received bytes hash to \(mine.hex), the sender's hash is \(a.file.digest?.hex ?? "none"); nothing was written under that name")
            }
            digest = mine
        }
        do {
            let dir = try parentDirectory(of: e.path)
            try WholeFile.write(a.file.bytes, entry: e.entry, name: e.path.name, in: dir, overwrite: config.overwrite, display: display)
        } catch {
            throw refusal(error.errno == .fileExists ? .exists : .io, error.description)
        }
        if let digest { digests.append((display, digest)) }
        channel.enqueue(.fileAck(FileAck(fileID: e.entry.fileID, status: .committed, digest: digest ?? .zero)))
        if let ev = meter.advance(by: UInt64(a.file.bytes.count), path: display, fileBytes: UInt64(a.file.bytes.count),
                                  fileSize: e.entry.size) {
            server.emit(ev)
        }
        server.emit(.fileDone(.init(session: id, path: display, bytes: UInt64(a.file.bytes.count), digest: digest)))
    }

    /// Modes and mtimes of directories we created, deepest first, after
    /// their contents stopped changing them.
    func applyDirectoryMetadata() {
        let ordered = createdDirectories.sorted {
            machine.entries[$0].path.components.count > machine.entries[$1].path.components.count
        }
        for i in ordered {
            let e = machine.entries[i]
            do {
                let (dir, _) = try server.destination.openDirectory(e.path.components[...], create: false)
                try Directory.applyMetadata(dir.fd, mode: e.entry.mode, mtimeSeconds: e.entry.mtimeSeconds,
                                            mtimeNanoseconds: e.entry.mtimeNanoseconds, path: dir.displayPath)
            } catch {
                server.logger.warning("could not set mode/mtime: \(error)")
            }
        }
    }
}
