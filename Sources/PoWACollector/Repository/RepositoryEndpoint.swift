/// What a repository session is opened with: where the repository is (the configuration file's
/// DSN), how long the opening may take, and the `application_name` that names the session in
/// `pg_stat_activity` (see `ApplicationName`). The logger is not part of it: it belongs to
/// the caller, and travels with each call.
struct RepositoryEndpoint: Equatable, Sendable {
    var dsn: String
    var connectTimeout: Duration
    var applicationName: String

    init(dsn: String, connectTimeout: Duration, applicationName: String) {
        self.dsn = dsn
        self.connectTimeout = connectTimeout
        self.applicationName = applicationName
    }

    /// The configuration's repository (`repository.dsn`, `connect_timeout`), for a session
    /// named `applicationName`.
    init(_ configuration: CollectorConfiguration, applicationName: String) {
        self.init(
            dsn: configuration.repositoryDSN, connectTimeout: .seconds(configuration.connectTimeout),
            applicationName: applicationName)
    }
}
