import FTEngine
import FTWire

#if canImport(Glibc)
import Glibc
#endif

extension Directory {
    /// The directory `path` goes in, beneath this one (the destination)
    /// through no link; `self` for a top-level entry. `cache` keeps the
    /// answers for one batch review or one small-files frame, so each
    /// directory is looked up once there and again by the next (one moved
    /// out meanwhile is not found). `new`: looked up now, not cached.
    /// `stage`: the path is inside that stage directory (`Stage`); the
    /// cache is keyed by the path as the peer sent it.
    func parent(of path: PeerPath, inside stage: PeerPath? = nil, create: Bool,
                cache: inout [PeerPath: Directory]) throws(IOError) -> (dir: Directory, new: Bool) {
        guard let parent = path.parent else { return (self, false) }
        if let d = cache[parent] { return (d, false) }
        let (d, _) = try openDirectory((stage.map { parent.inside($0) } ?? parent).components[...], create: create)
        cache[parent] = d
        return (d, true)
    }
}

/// Makes (or, for a dry run, looks for) a batch's directories beneath the
/// destination, on the offload thread. Every level is opened beneath the
/// destination's fd through no link, as on the loop.
enum DirectoryJob {
    enum Result: Sendable {
        /// There now; `levels` were created (0: it was there already).
        /// `asLeft`: it was there with the entry's mtime and mode, as a
        /// push cut off after making it leaves it (`PushSession.ended`).
        case made(levels: Int, asLeft: Bool)
        /// Dry run: not there.
        case absent
        case failed(IOError)
    }

    static func run(_ dirs: [(UInt32, [String], ManifestEntry)], in destination: Directory, create: Bool) -> [UInt32: Result] {
        ReceiveFault.slow(.review)
        var out: [UInt32: Result] = [:]
        out.reserveCapacity(dirs.count)
        for (id, components, entry) in dirs {
            do throws(IOError) {
                let (dir, created) = try destination.openDirectory(components[...], create: create)
                out[id] = .made(levels: created, asLeft: create && created == 0 && isAsLeft(dir.fd, entry))
            } catch {
                // A dry run only asks whether it is there.
                out[id] = create ? .failed(error) : .absent
                if create { break }
            }
        }
        return out
    }

    /// Whether the directory at `fd` has `entry`'s mtime, to the
    /// nanosecond, and its mode, or its mode with the owner's rwx (what a
    /// cut-off push gives the directories it made). Why: the push that
    /// resumes finds them existing, and would leave them with the mtimes
    /// its own writes give them and the cut-off push's owner bits.
    /// Setting them back to the entry's is setting back what they had.
    static func isAsLeft(_ fd: CInt, _ entry: ManifestEntry) -> Bool {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return false }
        let mode = UInt32(st.st_mode) & 0o7777
        return Int64(st.st_mtim.tv_sec) == entry.mtimeSeconds && UInt32(st.st_mtim.tv_nsec) == entry.mtimeNanoseconds
            && (mode == UInt32(Directory.effectiveMode(entry.mode)) || mode == UInt32(Directory.effectiveMode(DirectoryMetadata.cutOffMode(entry.mode))))
    }

    /// Moves the files an adopted stage holds whole into the new top, each
    /// into its directory (made by now) by one rename that never replaces
    /// (`RENAME_NOREPLACE`); both sides resolve beneath the destination
    /// through no link. The ids of those that could not be moved.
    static func adopt(_ moves: [Adoption], in destination: Directory) -> Set<UInt32> {
        var failed = Set<UInt32>()
        var dirs: [ArraySlice<String>: Directory] = [:]
        func dir(_ c: ArraySlice<String>) -> Directory? {
            if let d = dirs[c] { return d }
            let d = try? destination.openDirectory(c, create: false).0
            if let d { dirs[c] = d }
            return d
        }
        for m in moves {
            // The same name on both sides: the same path in either top.
            guard let from = dir(m.from.dropLast()), let to = dir(m.to.dropLast()), let name = m.to.last,
                  (try? from.move(name, into: to)) != nil else {
                failed.insert(m.id)
                continue
            }
        }
        return failed
    }
}
