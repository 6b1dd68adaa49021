/// Where snapshots wait while the repository cannot take them, and how much of them may wait
/// (`spool`): see `SnapshotSpool`.
///
/// ```json
/// {"spool": {"directory": "/var/lib/powa-collector/spool", "max_bytes": 1073741824, "max_age": 86400}}
/// ```
/// `"spool": false` turns spooling off.
public struct SpoolSettings: Sendable, Equatable {
    /// The directory (`spool.directory`), made at start if missing; one collector at a time.
    public var directory: String
    /// The most bytes of spooled snapshots, over every server (`spool.max_bytes`, 1 GiB).
    public var maxBytes: Int = 1 << 30
    /// The oldest a spooled snapshot may get, in seconds (`spool.max_age`, 24 h).
    public var maxAge: Double = 86_400

    /// The package's directory, the default of a configuration file without `spool`.
    public static let defaultDirectory = "/var/lib/powa-collector/spool"

    public init(directory: String = SpoolSettings.defaultDirectory) {
        self.directory = directory
    }

    /// `spool` of a configuration file: nil when turned off.
    static func parse(_ value: JSONValue?) throws(ConfigurationError) -> SpoolSettings? {
        switch value {
        case nil, .null?: return SpoolSettings()
        case .bool(false)?: return nil
        case .bool(true)?: return SpoolSettings()
        case .object(let object)?:
            var settings = SpoolSettings()
            switch object["directory"] {
            case nil, .null?: break
            case .string(let directory)? where directory.hasPrefix("/"): settings.directory = directory
            case let value?:
                throw ConfigurationError("\"spool.directory\" must be an absolute path, not \(value.summary)")
            }
            switch object["max_bytes"] {
            case nil, .null?: break
            case .number(let bytes)? where bytes >= 1 && bytes == bytes.rounded() && bytes < 1e18:
                settings.maxBytes = Int(bytes)
            case let value?:
                throw ConfigurationError("\"spool.max_bytes\" must be a whole number of bytes, not \(value.summary)")
            }
            switch object["max_age"] {
            case nil, .null?: break
            case .number(let seconds)? where seconds > 0 && seconds.isFinite: settings.maxAge = seconds
            case let value?:
                throw ConfigurationError("\"spool.max_age\" must be a positive number of seconds, not \(value.summary)")
            }
            return settings
        case let value?:
            throw ConfigurationError(
                "\"spool\" must be false or an object like {\"directory\": \"/var/lib/powa-collector/spool\"}, not \(value.summary)"
            )
        }
    }
}
