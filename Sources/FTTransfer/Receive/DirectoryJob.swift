import FTEngine
import FTWire

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
        case made(levels: Int)
        /// Dry run: not there.
        case absent
        case failed(IOError)
    }

    static func run(_ dirs: [(UInt32, [String])], in destination: Directory, create: Bool) -> [UInt32: Result] {
        var out: [UInt32: Result] = [:]
        out.reserveCapacity(dirs.count)
        for (id, components) in dirs {
            do throws(IOError) {
                let (_, created) = try destination.openDirectory(components[...], create: create)
                out[id] = .made(levels: created)
            } catch {
                // A dry run only asks whether it is there.
                out[id] = create ? .failed(error) : .absent
                if create { break }
            }
        }
        return out
    }
}
