import Foundation
import PostgresClient

/// Where the configuration comes from: a file, and the environment of a container.
///
/// The file is the one named by `--config`, else by `POWA_COLLECTOR_CONFIG`, else the first of
/// `ConfigurationFile.searchPath()` that exists. The repository's DSN may come from the
/// environment instead (`POWA_COLLECTOR_REPOSITORY_DSN`, or a mounted secret named by
/// `POWA_COLLECTOR_REPOSITORY_DSN_FILE`): it wins over the file's, and with it no file is needed.
/// Everything else libpq reads from its own variables (`PGPASSWORD`, `PGSSLMODE`...).
///
/// `load()` reads everything again, so a reload picks up an edited file and a rotated secret.
/// Errors name a variable, never its value: a DSN may hold a password, and even a path is
/// kept out so that no error can echo what a secret's mount says.
///
/// Not apple/swift-configuration's providers (Hummingbird links it anyway): the file keeps the
/// Python collector's format and its own error messages, the environment adds three lookups,
/// and a `_FILE` variable naming a secret's file (the convention of container images) is not
/// one of its providers' (`DirectoryFilesProvider` maps a directory's file names to keys).
public struct ConfigurationSource: Sendable {
    /// The configuration file's path.
    public static let configVariable = "POWA_COLLECTOR_CONFIG"
    /// The repository's DSN, overriding `repository.dsn`.
    public static let dsnVariable = "POWA_COLLECTOR_REPOSITORY_DSN"
    /// A file holding the repository's DSN (a mounted secret), overriding `repository.dsn`.
    public static let dsnFileVariable = "POWA_COLLECTOR_REPOSITORY_DSN_FILE"

    /// A DSN file larger than this is not a DSN (and `/dev/zero` must not fill the memory).
    private static let dsnFileLimit = 65536

    private let commandLinePath: String?
    private let environment: [String: String]
    private let searchPath: [String]

    /// - Parameters:
    ///   - commandLinePath: `--config`, which wins over everything.
    ///   - environment: the process's environment.
    ///   - searchPath: where to look when no path is given.
    public init(
        commandLinePath: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        searchPath: [String] = ConfigurationFile.searchPath()
    ) {
        self.commandLinePath = commandLinePath
        self.environment = environment
        self.searchPath = searchPath
    }

    /// Reads the file and the environment, and validates the result.
    ///
    /// - Returns: the configuration, and where it came from, for the log.
    public func load() throws(ConfigurationError) -> (CollectorConfiguration, origin: String) {
        let dsn = try environmentDSN()
        if let dsn { try Self.checkSyntax(dsn.value, origin: dsn.variable) }
        let dsnOrigin = dsn.map { ", repository.dsn from \($0.variable)" } ?? ""
        guard let file = try chosenFile() else {
            guard let dsn else {
                throw ConfigurationError(
                    "no configuration file found; looked for " + searchPath.joined(separator: ", ")
                        + " (copy powa-collector.conf.sample there, pass --config PATH, set \(Self.configVariable),"
                        + " or set \(Self.dsnVariable) to run without a file)")
            }
            return (CollectorConfiguration(repositoryDSN: dsn.value), "no configuration file\(dsnOrigin)")
        }
        let configuration: CollectorConfiguration
        do throws(ConfigurationError) {
            guard let data = FileManager.default.contents(atPath: file.path) else {
                throw ConfigurationError("the configuration file \(Self.unreadable(file.path))")
            }
            configuration = try ConfigurationFile.parse(data, repositoryDSN: dsn?.value)
            if dsn == nil { try Self.checkSyntax(configuration.repositoryDSN, origin: "repository.dsn") }
        } catch {
            throw ConfigurationError("\(file.name): \(error.message)")
        }
        return (configuration, file.path + dsnOrigin)
    }

    /// Refuses a DSN libpq cannot parse before any reload takes it, saying how without
    /// quoting it: libpq's own message would show a piece of it, maybe of its password.
    static func checkSyntax(_ dsn: String, origin: String) throws(ConfigurationError) {
        // A password holding '@' or ':' unencoded in a URI: libpq parses it, then takes the
        // rest of the password for a host or a port, and says so, quoting it.
        let lowered = dsn.lowercased()
        if lowered.hasPrefix("postgresql://") || lowered.hasPrefix("postgres://") {
            let authority = dsn.drop { $0 != "/" }.dropFirst(2).prefix { $0 != "/" && $0 != "?" }
            if authority.filter({ $0 == "@" }).count > 1 {
                throw ConfigurationError(
                    "\(origin) is a URI with more than one '@' before its host: percent-encode '@' in the user"
                        + " name or password as %40 (and ':' as %3A)")
            }
        }
        if let problem = ConnectionConfiguration.parseProblem(dsn) {
            throw ConfigurationError(
                "\(origin) is not a valid connection string: \(problem); write a URI postgresql://user@host:port/db,"
                    + " or key=value pairs, quoting a value with spaces as key='a b'")
        }
    }

    /// The file to read: its path, and how an error names it. Nil when none is named and
    /// none of the search path exists.
    private func chosenFile() throws(ConfigurationError) -> (path: String, name: String)? {
        if let commandLinePath { return (commandLinePath, commandLinePath) }
        if let path = environment[Self.configVariable] {
            guard !path.isEmpty else { throw ConfigurationError("\(Self.configVariable) is set but empty") }
            return (path, "the file named by \(Self.configVariable)")
        }
        return searchPath.first { FileManager.default.fileExists(atPath: $0) }.map { ($0, $0) }
    }

    /// The repository's DSN from the environment, and the variable it came from.
    private func environmentDSN() throws(ConfigurationError) -> (value: String, variable: String)? {
        let direct = environment[Self.dsnVariable]
        let file = environment[Self.dsnFileVariable]
        switch (direct, file) {
        case (nil, nil):
            return nil
        case (.some, .some):
            throw ConfigurationError(
                "both \(Self.dsnVariable) and \(Self.dsnFileVariable) are set: set only one of them")
        case (let value?, nil):
            guard !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw ConfigurationError("\(Self.dsnVariable) is set but empty")
            }
            return (value, Self.dsnVariable)
        case (nil, let path?):
            guard !path.isEmpty else { throw ConfigurationError("\(Self.dsnFileVariable) is set but empty") }
            // Opened without waiting and read only when it is a regular file: a FIFO or a
            // device would block a reload for ever.
            let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw ConfigurationError(
                    "the file named by \(Self.dsnFileVariable) cannot be read (\(String(cString: strerror(errno))))")
            }
            let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
            var status = stat()
            guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
                throw ConfigurationError("the file named by \(Self.dsnFileVariable) is not a regular file")
            }
            let data: Data
            do {
                data = try handle.read(upToCount: Self.dsnFileLimit + 1) ?? Data()
            } catch {
                throw ConfigurationError(
                    "the file named by \(Self.dsnFileVariable) cannot be read (\(Self.reason(error)))")
            }
            guard data.count <= Self.dsnFileLimit else {
                throw ConfigurationError(
                    "the file named by \(Self.dsnFileVariable) is larger than 64 KiB: it must hold one connection string")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw ConfigurationError("the file named by \(Self.dsnFileVariable) is not UTF-8 text")
            }
            // A secret's file usually ends with a newline; libpq takes the rest as it is.
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !value.isEmpty else {
                throw ConfigurationError("the file named by \(Self.dsnFileVariable) is empty")
            }
            return (value, Self.dsnFileVariable)
        }
    }

    /// Why the file at `path` could not be read, as "does not exist" or "cannot be read
    /// (reason)", without the path.
    private static func unreadable(_ path: String) -> String {
        guard FileManager.default.fileExists(atPath: path) else { return "does not exist" }
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        let reason = descriptor < 0 ? String(cString: strerror(errno)) : "not a regular file"
        if descriptor >= 0 { close(descriptor) }
        return "cannot be read (\(reason))"
    }

    /// Why a file could not be read, without its path (Foundation's descriptions name it).
    private static func reason(_ error: any Error) -> String {
        let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
        if let underlying, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        switch (error as NSError).code {
        case NSFileReadNoSuchFileError: return "no such file"
        case NSFileReadNoPermissionError: return "permission denied"
        default: return "read error"
        }
    }
}
