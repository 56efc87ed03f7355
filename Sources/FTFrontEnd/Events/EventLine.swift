/// The fields of one kind of NDJSON event. Its `CodingKeys` are the
/// documented field names (docs/events.md), so the schema is the type.
package protocol EventBody: Codable, Sendable {
    /// The value of the line's `event` field.
    static var event: String { get }
}

/// One NDJSON line: `event` and `v` first, then the body's fields, all in
/// one object. ft and ftbench write every line through this type.
package struct EventLine<Body: EventBody>: Codable, Sendable {
    /// The version of the event format (docs/events.md). Fields may be
    /// added within a version; one is renamed, removed or changes meaning
    /// only with a new version.
    package static var version: Int { 1 }

    package var body: Body

    package init(_ body: Body) { self.body = body }

    enum Envelope: String, CodingKey {
        case event
        case v
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Envelope.self)
        try c.encode(Body.event, forKey: .event)
        try c.encode(Self.version, forKey: .v)
        try body.encode(to: encoder)
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Envelope.self)
        let event = try c.decode(String.self, forKey: .event)
        guard event == Body.event else {
            throw DecodingError.dataCorruptedError(forKey: .event, in: c, debugDescription: "a '\(event)' event, not '\(Body.event)'")
        }
        let v = try c.decode(Int.self, forKey: .v)
        guard v == Self.version else {
            throw DecodingError.dataCorruptedError(forKey: .v, in: c, debugDescription: "version \(v), this build reads \(Self.version)")
        }
        body = try Body(from: decoder)
    }
}

extension EventBody {
    /// This event as one line of JSON, without the newline.
    package var line: String { JSONLineEncoder().line(EventLine(self)) }
}

/// A JSON object whose keys are data (paths, reasons, operation kinds),
/// written in the order given. A `Dictionary` would come out in a
/// different order every run.
package struct OrderedFields<Value: Codable & Sendable>: Codable, Sendable {
    package var pairs: [(key: String, value: Value)]

    package init(_ pairs: [(key: String, value: Value)]) { self.pairs = pairs }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    package func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        for (k, v) in pairs { try c.encode(v, forKey: Key(stringValue: k)) }
    }

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        pairs = try c.allKeys.map { ($0.stringValue, try c.decode(Value.self, forKey: $0)) }
    }

    package subscript(key: String) -> Value? { pairs.first { $0.key == key }?.value }
}
