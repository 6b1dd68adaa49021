import Foundation

/// The configuration file: the Python collector's JSON, its search path, and its validation.
///
/// Unknown keys are ignored, so that one file serves both collectors. `ConfigurationSource`
/// decides which file is read and what the environment adds.
public enum ConfigurationFile {
    /// The files searched, in order.
    public static func searchPath(
        home: String = NSHomeDirectory(), currentDirectory: String = FileManager.default.currentDirectoryPath
    ) -> [String] {
        /// `directory/name`, without a doubled slash when the directory is `/`.
        func path(_ directory: String, _ name: String) -> String {
            (directory.hasSuffix("/") ? directory : directory + "/") + name
        }
        return [
            "/etc/powa-collector.conf",
            path(home, ".config/powa-collector.conf"),
            path(home, ".powa-collector.conf"),
            path(currentDirectory, "powa-collector.conf"),
        ]
    }

    /// Parses and validates the JSON text of a configuration file.
    ///
    /// - Parameter repositoryDSN: the repository's DSN from the environment, which wins over
    ///   the file's; with it, the file may leave `repository` out.
    public static func parse(_ data: Data, repositoryDSN: String? = nil) throws(ConfigurationError)
        -> CollectorConfiguration
    {
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw ConfigurationError("invalid JSON: \(jsonErrorMessage(error))")
        }
        guard case .object(let object) = root else {
            throw ConfigurationError("the configuration must be a JSON object, like {\"repository\": {\"dsn\": \"...\"}}")
        }
        let dsn: String
        if let repositoryDSN { dsn = repositoryDSN } else { dsn = try fileDSN(object) }
        var configuration = CollectorConfiguration(repositoryDSN: dsn)
        configuration.debug = try bool(object, "debug") ?? false
        configuration.useServerAlias = try bool(object, "use_server_alias") ?? false
        configuration.skipKnownQueryTexts = try bool(object, "skip_known_query_texts") ?? true
        switch object["http"] {
        case nil, .null?: break
        case .object(let http)?:
            switch http["listen"] {
            case nil, .null?: break
            case .string(let text)? where HTTPAddress(text) != nil: configuration.httpListen = HTTPAddress(text)
            case let value?:
                throw ConfigurationError("\"http.listen\" must be host:port, like \"127.0.0.1:9188\", not \(value.summary)")
            }
        case let value?:
            throw ConfigurationError("\"http\" must be an object like {\"listen\": \"127.0.0.1:9188\"}, not \(value.summary)")
        }
        switch object["servers"] {
        case nil, .null?: break
        case let servers?: configuration.serverOptions = try ServerConnectionOptions.parse(servers)
        }
        configuration.spool = try SpoolSettings.parse(object["spool"])
        switch object["log_format"] {
        case nil, .null: break
        case .string(let text) where LogFormat(rawValue: text) != nil: configuration.logFormat = LogFormat(rawValue: text)!
        case let value?: throw ConfigurationError("\"log_format\" must be \"text\" or \"json\", not \(value.summary)")
        }
        configuration.connectTimeout = try positiveNumber(object, "connect_timeout") ?? configuration.connectTimeout
        configuration.snapshotTimeout = try positiveNumber(object, "snapshot_timeout") ?? configuration.snapshotTimeout
        if let limit = try positiveNumber(object, "max_concurrent_snapshots") {
            guard limit == limit.rounded(), limit <= 10_000 else {
                throw ConfigurationError("\"max_concurrent_snapshots\" must be a whole number from 1 to 10000, not \(limit)")
            }
            configuration.maxConcurrentSnapshots = Int(limit)
        }
        return configuration
    }

    /// `repository.dsn`, checked.
    private static func fileDSN(_ object: [String: JSONValue]) throws(ConfigurationError) -> String {
        guard let repository = object["repository"] else {
            throw ConfigurationError(
                "missing \"repository\": add {\"repository\": {\"dsn\": \"postgresql://user@host:port/powa\"}}"
                    + " (or set \(ConfigurationSource.dsnVariable))")
        }
        guard case .object(let repositoryObject) = repository else {
            throw ConfigurationError("\"repository\" must be an object with a \"dsn\" key, not \(repository.summary)")
        }
        guard let dsnValue = repositoryObject["dsn"] else {
            throw ConfigurationError("missing \"repository.dsn\": the libpq connection string of the repository database")
        }
        guard case .string(let dsn) = dsnValue else {
            throw ConfigurationError("\"repository.dsn\" must be a string, not \(dsnValue.summary)")
        }
        guard !dsn.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ConfigurationError("\"repository.dsn\" is empty")
        }
        return dsn
    }

    private static func bool(_ object: [String: JSONValue], _ key: String) throws(ConfigurationError) -> Bool? {
        switch object[key] {
        case nil, .null: return nil
        case .bool(let value): return value
        case let value?: throw ConfigurationError("\"\(key)\" must be true or false, not \(value.summary)")
        }
    }

    private static func positiveNumber(_ object: [String: JSONValue], _ key: String) throws(ConfigurationError) -> Double? {
        switch object[key] {
        case nil, .null: return nil
        case .number(let value) where value > 0 && value.isFinite: return value
        case let value?: throw ConfigurationError("\"\(key)\" must be a positive number, not \(value.summary)")
        }
    }

    /// The decoder's own description of where the JSON is wrong (it gives line and column).
    private static func jsonErrorMessage(_ error: any Error) -> String {
        guard case DecodingError.dataCorrupted(let context) = error else { return "\(error)" }
        let underlying = (context.underlyingError as? NSError)?.userInfo[NSDebugDescriptionErrorKey] as? String
        return underlying ?? context.debugDescription
    }
}

/// A JSON document, typed just enough to tell a configuration's mistakes apart.
enum JSONValue: Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// How an error message names this value.
    var summary: String {
        switch self {
        case .null: "null"
        case .bool(let value): "\(value)"
        case .number(let value): value == value.rounded() && abs(value) < 1e15 ? "\(Int(value))" : "\(value)"
        // Never the string itself: a DSN (anywhere in the file) may hold a password.
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A configuration problem, as one actionable line.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
