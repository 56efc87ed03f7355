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
///
/// It writes as it goes, into one string, with no node per value (against
/// the tree it built before: ~8% less CPU for `ft recv --json` of 100,000
/// small files; most of what is left is Codable's own dispatch). So containers
/// must be filled in order — a nested one before its parent's next key —
/// as synthesized conformances and ft's own do; a container written to
/// after its parent moved on stops the program rather than write bad JSON.
/// A key is written once (a second write would repeat it).
package struct JSONLineEncoder {
    package init() {}

    package func encode<T: Encodable>(_ value: T) throws -> String {
        let out = JSONStream()
        try out.value(value, path: [])
        out.closeAll()
        return out.text
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

/// The text being written and the containers open in it, innermost last.
final class JSONStream {
    var text = ""
    private struct Open {
        let object: Bool
        var count = 0
        /// Tells a container from a later one at the same depth.
        let serial: Int
    }

    private var open: [Open] = []
    private var serials = 0

    init() { text.reserveCapacity(256) }

    /// Closes the containers deeper than `depth`.
    private func close(to depth: Int) {
        while open.count > depth {
            text += open.removeLast().object ? "}" : "]"
        }
    }

    func closeAll() { close(to: 0) }

    func write(_ s: String) { text += s }

    /// A container for the value at `depth` (the number of containers
    /// around it). The same encoder asked twice for an object gets the same
    /// object (`EventLine` writes its fields, then the body's).
    func openContainer(object: Bool, depth: Int) -> Int {
        close(to: depth + 1)
        if open.count == depth + 1, open[depth].object, object { return open[depth].serial }
        close(to: depth)
        text += object ? "{" : "["
        serials += 1
        open.append(Open(object: object, serial: serials))
        return serials
    }

    /// Where the next item of container `serial` (at `depth`) goes: after
    /// its comma, and after its key in an object.
    func item(_ key: String?, depth: Int, serial: Int) {
        close(to: depth + 1)
        precondition(open.count == depth + 1 && open[depth].serial == serial,
                     "JSONLineEncoder: a container was written to after its parent moved on")
        if open[depth].count > 0 { text += "," }
        open[depth].count += 1
        if let key {
            JSON.quote(key, into: &text)
            text += ":"
        }
    }

    /// `value` where the stream stands, at `depth`.
    func value<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
        switch value {
        case let v as String: JSON.quote(v, into: &text)
        case let v as Bool: text += v ? "true" : "false"
        case let v as Double: double(v)
        case let v as Float: double(Double(v))
        case let v as Int: text += String(v)
        case let v as Int64: text += String(v)
        case let v as Int32: text += String(v)
        case let v as Int16: text += String(v)
        case let v as Int8: text += String(v)
        case let v as UInt64: text += String(v)
        case let v as UInt: text += String(v)
        case let v as UInt32: text += String(v)
        case let v as UInt16: text += String(v)
        case let v as UInt8: text += String(v)
        default:
            let before = text.utf8.count
            let depth = open.count
            try value.encode(to: StreamEncoder(stream: self, depth: depth, codingPath: path))
            // A value that asked for no container is an empty object.
            if text.utf8.count == before { text += "{}" }
        }
    }

    func double(_ d: Double) {
        guard d.isFinite else { text += "null"; return }
        // Three decimals are plenty for rates and seconds.
        let r = (d * 1000).rounded() / 1000
        text += r == r.rounded() && abs(r) < 1e15 ? String(Int64(r)) : String(r)
    }
}

struct StreamEncoder: Encoder {
    let stream: JSONStream
    /// Containers around this encoder's value.
    let depth: Int
    var codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let serial = stream.openContainer(object: true, depth: depth)
        return KeyedEncodingContainer(KeyedStream<Key>(stream: stream, depth: depth, serial: serial, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let serial = stream.openContainer(object: false, depth: depth)
        return UnkeyedStream(stream: stream, depth: depth, serial: serial, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleStream(stream: stream, codingPath: codingPath)
    }
}

struct KeyedStream<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let stream: JSONStream
    let depth: Int
    let serial: Int
    var codingPath: [any CodingKey]

    private func at(_ key: Key) { stream.item(key.stringValue, depth: depth, serial: serial) }

    mutating func encodeNil(forKey key: Key) throws {
        at(key)
        stream.write("null")
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        at(key)
        try stream.value(value, path: codingPath + [key])
    }

    // Scalars written directly: through the generic path each would be a
    // dynamic cast of an unspecialized value.
    mutating func encode(_ v: String, forKey k: Key) throws { at(k); JSON.quote(v, into: &stream.text) }
    mutating func encode(_ v: Bool, forKey k: Key) throws { at(k); stream.write(v ? "true" : "false") }
    mutating func encode(_ v: Double, forKey k: Key) throws { at(k); stream.double(v) }
    mutating func encode(_ v: Float, forKey k: Key) throws { at(k); stream.double(Double(v)) }
    mutating func encode(_ v: Int, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: Int8, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: Int16, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: Int32, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: Int64, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: UInt, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: UInt8, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: UInt16, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: UInt32, forKey k: Key) throws { at(k); stream.write(String(v)) }
    mutating func encode(_ v: UInt64, forKey k: Key) throws { at(k); stream.write(String(v)) }

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
        at(key)
        return StreamEncoder(stream: stream, depth: depth + 1, codingPath: codingPath + [key]).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        at(key)
        return StreamEncoder(stream: stream, depth: depth + 1, codingPath: codingPath + [key]).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        stream.item("super", depth: depth, serial: serial)
        return StreamEncoder(stream: stream, depth: depth + 1, codingPath: codingPath)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        at(key)
        return StreamEncoder(stream: stream, depth: depth + 1, codingPath: codingPath + [key])
    }
}

struct UnkeyedStream: UnkeyedEncodingContainer {
    let stream: JSONStream
    let depth: Int
    let serial: Int
    var codingPath: [any CodingKey]
    private(set) var count = 0

    init(stream: JSONStream, depth: Int, serial: Int, codingPath: [any CodingKey]) {
        self.stream = stream
        self.depth = depth
        self.serial = serial
        self.codingPath = codingPath
    }

    private mutating func next() {
        stream.item(nil, depth: depth, serial: serial)
        count += 1
    }

    mutating func encodeNil() throws {
        next()
        stream.write("null")
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        next()
        try stream.value(value, path: codingPath)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        next()
        return StreamEncoder(stream: stream, depth: depth + 1, codingPath: codingPath).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        next()
        return StreamEncoder(stream: stream, depth: depth + 1, codingPath: codingPath).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder {
        next()
        return StreamEncoder(stream: stream, depth: depth + 1, codingPath: codingPath)
    }
}

struct SingleStream: SingleValueEncodingContainer {
    let stream: JSONStream
    var codingPath: [any CodingKey]

    mutating func encodeNil() throws { stream.write("null") }
    mutating func encode<T: Encodable>(_ value: T) throws { try stream.value(value, path: codingPath) }
    mutating func encode(_ v: String) throws { JSON.quote(v, into: &stream.text) }
    mutating func encode(_ v: Bool) throws { stream.write(v ? "true" : "false") }
    mutating func encode(_ v: Int) throws { stream.write(String(v)) }
    mutating func encode(_ v: UInt64) throws { stream.write(String(v)) }
    mutating func encode(_ v: Double) throws { stream.double(v) }
}
