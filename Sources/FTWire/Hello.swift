/// Opens every connection, in both directions. Magic and version range sit at
/// fixed offsets so that any future version can still read them and say
/// clearly why two peers cannot talk.
public struct Hello: Equatable, Sendable {
    public static let magic: [UInt8] = Array("FTXF".utf8)
    public static let proofCap = 64
    public static let agentCap = 64

    public enum Role: UInt8, Sendable {
        case sender = 1
        case receiver = 2
    }

    public var minVersion: UInt16
    public var maxVersion: UInt16
    public var role: Role
    public var features: Features
    public var sessionID: [UInt8]  // 16 bytes
    /// Challenge slot: the receiver's nonce, or the sender's nonce.
    public var nonce: [UInt8]  // 32 bytes
    /// Answer to the peer's challenge; empty when no auth is in use.
    public var proof: [UInt8]
    /// Free text naming the program, for diagnostics only.
    public var agent: String

    public init(
        minVersion: UInt16 = ProtocolVersion.min, maxVersion: UInt16 = ProtocolVersion.max,
        role: Role, features: Features = [], sessionID: [UInt8] = Array(repeating: 0, count: 16),
        nonce: [UInt8] = Array(repeating: 0, count: 32), proof: [UInt8] = [], agent: String = ProtocolVersion.agent
    ) {
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.role = role
        self.features = features
        self.sessionID = sessionID
        self.nonce = nonce
        self.proof = proof
        self.agent = agent
    }

    func encode(into w: inout WireWriter) {
        precondition(sessionID.count == 16 && nonce.count == 32)
        precondition(proof.count <= Self.proofCap)
        w.raw(Self.magic)
        w.u16(minVersion)
        w.u16(maxVersion)
        w.u8(role.rawValue)
        w.u8(0)
        w.u8(0)
        w.u8(0)
        w.u64(features.rawValue)
        w.raw(sessionID)
        w.raw(nonce)
        w.u8(UInt8(proof.count))
        w.raw(proof)
        let agentBytes = Array(agent.utf8.prefix(Self.agentCap))
        w.u8(UInt8(agentBytes.count))
        w.raw(agentBytes)
    }

    static func decode(_ r: inout WireReader) throws(WireError) -> Hello {
        let magic = try r.bytes(4, "magic")
        guard magic == Self.magic else { throw .badMagic(magic) }
        let minV = try r.u16("min version")
        let maxV = try r.u16("max version")
        guard minV <= maxV else {
            throw .invalidField(.hello, field: "version range", reason: "\(minV) > \(maxV)")
        }
        let roleByte = try r.u8("role")
        guard let role = Role(rawValue: roleByte) else {
            throw .invalidField(.hello, field: "role", reason: "unknown role \(roleByte)")
        }
        try r.skip(3, "reserved")
        let features = Features(rawValue: try r.u64("features"))
        let session = try r.bytes(16, "session id")
        let nonce = try r.bytes(32, "nonce")
        let proofLen = Int(try r.u8("proof length"))
        guard proofLen <= Self.proofCap else {
            throw .invalidField(.hello, field: "proof length", reason: "\(proofLen) > \(Self.proofCap)")
        }
        let proof = try r.bytes(proofLen, "proof")
        let agentLen = Int(try r.u8("agent length"))
        let agentBytes = try r.bytes(min(agentLen, Self.agentCap), "agent")
        // Later versions may append fields; v1 ignores what follows.
        return Hello(
            minVersion: minV, maxVersion: maxV, role: role, features: features, sessionID: session,
            nonce: nonce, proof: proof, agent: String(decoding: agentBytes, as: UTF8.self))
    }
}

/// Feature bits a peer offers in its hello. The session uses the intersection.
public struct Features: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// xxh3-128 per file in the file-end trailer.
    public static let xxh3 = Features(rawValue: 1 << 0)
    /// Receiver offers what it already holds in its batch answers.
    public static let resume = Features(rawValue: 1 << 1)
    /// Receiver: a sender must prove it knows the one-time code.
    public static let auth = Features(rawValue: 1 << 2)
    /// Sender asks (receiver agrees) to seal everything after the proofs.
    public static let encrypt = Features(rawValue: 1 << 3)
    /// Sender: this push may add data streams (`-P`); receiver: it takes
    /// them.
    public static let dataStreams = Features(rawValue: 1 << 4)
    /// Sender: this connection is an extra data stream of the push named
    /// by the hello's session id, not a push of its own.
    public static let dataStream = Features(rawValue: 1 << 5)
    /// With `encrypt`: the sender offers this cipher; the receiver chose it.
    public static let aes256GCM = Features(rawValue: 1 << 6)
    public static let chacha20Poly1305 = Features(rawValue: 1 << 7)
    /// Without `encrypt`: the sender can tag frames with Poly1305 (the
    /// frame as ChaCha20-Poly1305's associated data) instead of
    /// HMAC-SHA256; the receiver's hello says it will. A peer that does not
    /// know the bit gets HMAC-SHA256 tags, as before it existed.
    public static let poly1305Tags = Features(rawValue: 1 << 8)
}

public enum ProtocolVersion {
    /// v1 sent the whole manifest before any data; v2 streams it in
    /// batches, each answered and acknowledged on its own; in v3 the
    /// receiver speaks first (`ErrorFrame.banner`), so a sender writes
    /// nothing to a host before it knows the host runs ft. They do not
    /// mix: an older peer is told who should upgrade.
    public static let min: UInt16 = 3
    public static let max: UInt16 = 3
    public static let agent = "ft/0.3"

    /// Picks the highest version both ranges hold, or explains why none fits.
    public static func negotiate(
        localMin: UInt16 = min, localMax: UInt16 = max, peerMin: UInt16, peerMax: UInt16
    ) -> Result<UInt16, VersionMismatch> {
        let hi = Swift.min(localMax, peerMax)
        let lo = Swift.max(localMin, peerMin)
        guard lo <= hi else {
            return .failure(VersionMismatch(localMin: localMin, localMax: localMax, peerMin: peerMin, peerMax: peerMax))
        }
        return .success(hi)
    }
}

public struct VersionMismatch: Error, Equatable, Sendable, CustomStringConvertible {
    public var localMin, localMax, peerMin, peerMax: UInt16

    public var description: String {
        func range(_ a: UInt16, _ b: UInt16) -> String { a == b ? "v\(a)" : "v\(a)..v\(b)" }
        let advice = peerMax < localMin ? "upgrade ft on the peer" : "upgrade ft on this host"
        return "protocol version mismatch: this ft speaks \(range(localMin, localMax)), "
            + "the peer speaks \(range(peerMin, peerMax)); \(advice)"
    }
}
