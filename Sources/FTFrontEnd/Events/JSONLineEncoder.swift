/// Encodes `Encodable` values as one line of compact JSON.
///
/// Why not Foundation's `JSONEncoder`: FoundationEssentials adds about
/// 7.5 MB to a statically linked binary (a 6.1 MB hello-world becomes
/// 13.6 MB stripped), which would put the packaged `ft` past its 30 MB
/// budget; the executables use no Foundation at all. The event and report
/// types are ordinary `Codable` values either way: the tests decode this
/// encoder's output with Foundation's `JSONDecoder` into the same types.
///
/// What it does differently from `JSONEncoder`, on purpose:
/// - Keys come out in the order the type encodes them (declaration order
///   for synthesized conformances), so a line reads the same every run.
/// - An absent optional is written as `null`, not left out: every event
///   of a kind has the same fields (docs/events.md).
/// - Doubles keep three decimals, plenty for seconds and rates.
/// - Non-finite doubles become `null`.
package struct JSONLineEncoder {
    package init() {}

    package func encode<T: Encodable>(_ value: T) throws -> String {
        let root = JSONNode()
        try value.encode(to: TreeEncoder(node: root, codingPath: []))
        return root.resolved.text
    }

    /// For values whose encoding cannot fail (everything ft writes).
    package func line<T: Encodable>(_ value: T) -> String {
        do {
            return try encode(value)
        } catch {
            // Only a custom encode(to:) that throws gets here; say so in
            // the stream rather than print half an object.
            return #"{"event":"error","v":1,"message":"internal: could not encode an event"}"#
        }
    }
}

/// One value being built. Containers hand out child nodes, which are
/// resolved into `JSON` once the whole value has been encoded (a nested
/// container may be filled after its parent returned it). Fields and items
/// are appended in place: an object of a thousand hashes is built in one
/// pass, not copied once per key.
final class JSONNode {
    private enum Kind {
        case empty
        case scalar(JSON)
        case object
        case array
    }

    private var kind = Kind.empty
    private var fields: [(String, JSONNode)] = []
    /// Where each key sits in `fields`.
    private var position: [String: Int] = [:]
    private var items: [JSONNode] = []

    var resolved: JSON {
        switch kind {
        case .empty: return .object([])
        case .scalar(let j): return j
        case .object: return .object(fields.map { ($0.0, $0.1.resolved) })
        case .array: return .array(items.map(\.resolved))
        }
    }

    func set(_ j: JSON) { kind = .scalar(j) }

    func makeObject() {
        if case .object = kind { return }
        kind = .object
        fields = []
        position = [:]
    }

    /// A child under `key`; a key written twice keeps its first place and
    /// takes the later value, as a dictionary would.
    func child(_ key: String) -> JSONNode {
        makeObject()
        if let at = position[key] { return fields[at].1 }
        let node = JSONNode()
        position[key] = fields.count
        fields.append((key, node))
        return node
    }

    func makeArray() {
        if case .array = kind { return }
        kind = .array
        items = []
    }

    func append() -> JSONNode {
        makeArray()
        let node = JSONNode()
        items.append(node)
        return node
    }

    var count: Int { items.count }
}

struct TreeEncoder: Encoder {
    let node: JSONNode
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        node.makeObject()
        return KeyedEncodingContainer(KeyedTree<Key>(node: node, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        node.makeArray()
        return UnkeyedTree(node: node, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleTree(node: node, codingPath: codingPath)
    }
}

/// Scalars and nested values, shared by the three container kinds: each
/// first picks the node the value goes to.
extension JSONNode {
    func put<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
        switch value {
        case let v as String: set(.string(v))
        case let v as Bool: set(.bool(v))
        case let v as Double: set(.double(v))
        case let v as Float: set(.double(Double(v)))
        case let v as Int: set(.int(Int64(v)))
        case let v as Int64: set(.int(v))
        case let v as Int32: set(.int(Int64(v)))
        case let v as UInt64: set(.uint(v))
        case let v as UInt: set(.uint(UInt64(v)))
        case let v as UInt32: set(.uint(UInt64(v)))
        default: try value.encode(to: TreeEncoder(node: self, codingPath: path))
        }
    }
}

struct KeyedTree<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: JSONNode
    var codingPath: [any CodingKey]

    private func slot(_ key: Key) -> JSONNode { node.child(key.stringValue) }

    mutating func encodeNil(forKey key: Key) throws { slot(key).set(.null) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try slot(key).put(value, path: codingPath + [key])
    }
    // Scalars are written directly rather than through the type switch.
    mutating func encode(_ v: Bool, forKey k: Key) throws { slot(k).set(.bool(v)) }
    mutating func encode(_ v: String, forKey k: Key) throws { slot(k).set(.string(v)) }
    mutating func encode(_ v: Double, forKey k: Key) throws { slot(k).set(.double(v)) }
    mutating func encode(_ v: Float, forKey k: Key) throws { slot(k).set(.double(Double(v))) }
    mutating func encode(_ v: Int, forKey k: Key) throws { slot(k).set(.int(Int64(v))) }
    mutating func encode(_ v: Int8, forKey k: Key) throws { slot(k).set(.int(Int64(v))) }
    mutating func encode(_ v: Int16, forKey k: Key) throws { slot(k).set(.int(Int64(v))) }
    mutating func encode(_ v: Int32, forKey k: Key) throws { slot(k).set(.int(Int64(v))) }
    mutating func encode(_ v: Int64, forKey k: Key) throws { slot(k).set(.int(v)) }
    mutating func encode(_ v: UInt, forKey k: Key) throws { slot(k).set(.uint(UInt64(v))) }
    mutating func encode(_ v: UInt8, forKey k: Key) throws { slot(k).set(.uint(UInt64(v))) }
    mutating func encode(_ v: UInt16, forKey k: Key) throws { slot(k).set(.uint(UInt64(v))) }
    mutating func encode(_ v: UInt32, forKey k: Key) throws { slot(k).set(.uint(UInt64(v))) }
    mutating func encode(_ v: UInt64, forKey k: Key) throws { slot(k).set(.uint(v)) }

    // Synthesized conformances call these for optionals; the standard
    // library's defaults leave the key out, ft's events write null.
    mutating func encodeIfPresent<T: Encodable>(_ v: T?, forKey k: Key) throws {
        if let v { try encode(v, forKey: k) } else { try encodeNil(forKey: k) }
    }
    mutating func encodeIfPresent(_ v: Bool?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: String?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: Double?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: Float?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: Int?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: Int8?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: Int16?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: Int32?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: Int64?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: UInt?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: UInt8?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: UInt16?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: UInt32?, forKey k: Key) throws { try present(v, k) }
    mutating func encodeIfPresent(_ v: UInt64?, forKey k: Key) throws { try present(v, k) }

    private mutating func present<T: Encodable>(_ v: T?, _ k: Key) throws {
        if let v { try encode(v, forKey: k) } else { try encodeNil(forKey: k) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        TreeEncoder(node: slot(key), codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        TreeEncoder(node: slot(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { TreeEncoder(node: node.child("super"), codingPath: codingPath) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { TreeEncoder(node: slot(key), codingPath: codingPath + [key]) }
}

struct UnkeyedTree: UnkeyedEncodingContainer {
    let node: JSONNode
    var codingPath: [any CodingKey]
    var count: Int { node.count }

    mutating func encodeNil() throws { node.append().set(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.append().put(value, path: codingPath) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        TreeEncoder(node: node.append(), codingPath: codingPath).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        TreeEncoder(node: node.append(), codingPath: codingPath).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { TreeEncoder(node: node.append(), codingPath: codingPath) }
}

struct SingleTree: SingleValueEncodingContainer {
    let node: JSONNode
    var codingPath: [any CodingKey]

    mutating func encodeNil() throws { node.set(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.put(value, path: codingPath) }
}
