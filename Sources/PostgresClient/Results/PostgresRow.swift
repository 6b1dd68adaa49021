/// One row of a result, in PostgreSQL's text format: each column is its text or nil for NULL.
public struct PostgresRow: Sendable, Hashable {
    /// The columns' texts, in order; nil is SQL NULL.
    public let values: [String?]

    public init(values: [String?]) { self.values = values }

    /// The text of column `index`, nil for NULL.
    public subscript(index: Int) -> String? { values[index] }

    /// Column `index` decoded as `T`; throws when it is NULL or not a valid `T`.
    public func decode<T: PostgresTextDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresDecodingError) -> T {
        guard index < values.count else { throw PostgresDecodingError(column: index, text: nil, type: "\(T.self)") }
        guard let text = values[index], let value = T(postgresText: text) else {
            throw PostgresDecodingError(column: index, text: values[index], type: "\(T.self)")
        }
        return value
    }

    /// Column `index` decoded as `T`, nil when it is NULL; throws when it is not a valid `T`.
    public func decodeIfPresent<T: PostgresTextDecodable>(_ index: Int, as type: T.Type = T.self) throws(PostgresDecodingError)
        -> T?
    {
        guard index < values.count, values[index] != nil else { return nil }
        return try decode(index, as: type)
    }
}

/// A column whose text is NULL or not of the type asked for.
public struct PostgresDecodingError: Error, Sendable, CustomStringConvertible {
    public let column: Int
    public let text: String?
    public let type: String

    /// `text` of column `column` is not a valid `type` (NULL when nil).
    public init(column: Int, text: String?, type: String) {
        self.column = column
        self.text = text
        self.type = type
    }
    public var description: String {
        if let text {
            "column \(column): \(String(reflecting: text)) is not a valid \(type)"
        } else {
            "column \(column): NULL where a \(type) was expected"
        }
    }
}

/// A Swift type read from PostgreSQL's text output format.
public protocol PostgresTextDecodable {
    init?(postgresText: String)
}

extension String: PostgresTextDecodable {
    public init?(postgresText: String) { self = postgresText }
}

extension Int: PostgresTextDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int32: PostgresTextDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Int64: PostgresTextDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Double: PostgresTextDecodable {
    public init?(postgresText: String) { self.init(postgresText) }
}

extension Bool: PostgresTextDecodable {
    public init?(postgresText: String) {
        switch postgresText {
        case "t", "true", "on": self = true
        case "f", "false", "off": self = false
        default: return nil
        }
    }
}
