/// `check`'s warnings about a server's module configuration in PoWA 5: three ways an upgrade of
/// powa or of PostgreSQL leaves a server snapshotted without some of its data, which powa
/// reports nowhere. Each warning says what is lost and gives the statement that fixes it.
public struct ModuleConfigurationCheck {
    let server: RemoteServer
    /// The remote's `server_version_num`.
    let remoteVersion: Int

    func warnings(repository: PoWARepository, deadline: ContinuousClock.Instant) async -> [CheckReport.Item] {
        var warnings: [CheckReport.Item] = []
        do {
            // A feature whose retention fails is also missing: said once, with both effects.
            let unresolved = try await repository.unresolvedRetentions(serverID: server.id, deadline: deadline)
            for retention in unresolved {
                warnings.append(self.unresolved(retention, repository: repository))
            }
            for feature in try await repository.featuresMissing(
                serverID: server.id, remoteVersion: remoteVersion, deadline: deadline)
            where !unresolved.contains(where: { $0.feature == feature }) {
                warnings.append(missing(feature, repository: repository))
            }
            let hidden = try await repository.modulesHiddenByRepositoryVersion(
                serverID: server.id, remoteVersion: remoteVersion, deadline: deadline)
            for module in hidden.modules {
                warnings.append(self.hidden(module, repositoryVersion: hidden.repositoryVersion))
            }
        } catch {
            warnings.append(.init(check: "modules", ok: false, detail: "cannot read powa's module configuration: \(error)"))
        }
        return warnings
    }

    func missing(_ feature: PoWARepository.Feature, repository: PoWARepository) -> CheckReport.Item {
        let what = feature.kind == "db_module" ? "per-database module" : "module"
        return .init(
            check: "modules", ok: false,
            detail: "\(what) \(feature.name) is not activated for this server, which powa does when it registers one"
                + " (a server registered before an upgrade of powa that added it): it is not snapshotted",
            hint: activation(feature, repository: repository))
    }

    func hidden(_ module: PoWARepository.Module, repositoryVersion: Int) -> CheckReport.Item {
        let needed = Self.postgresVersion(module.minimumVersion)
        return .init(
            check: "modules", ok: false,
            detail: "module \(module.name) needs PostgreSQL \(needed) or later, which this server runs, but the"
                + " repository runs PostgreSQL \(Self.postgresVersion(repositoryVersion)): powa_functions hides a module"
                + " newer than the repository's PostgreSQL from every server, so it is not snapshotted",
            hint: "upgrade the repository's PostgreSQL to \(needed) or later")
    }

    func unresolved(_ retention: PoWARepository.UnresolvedRetention, repository: PoWARepository) -> CheckReport.Item {
        .init(
            check: "retention", ok: false,
            detail: "powa cannot resolve the retention of \(retention.feature.kind) \(retention.feature.name) for this"
                + " server (\(retention.error)): the purges that ask for it fail, each time powa purges (every"
                + " powa_coalesce snapshots, an error in powa_snapshot_metas.errors), and its old rows are never purged",
            hint: activation(retention.feature, repository: repository))
    }

    /// The statement that activates a feature for this server, ready to paste.
    private func activation(_ feature: PoWARepository.Feature, repository: PoWARepository) -> String {
        let function =
            switch feature.kind {
            case "extension": "powa_activate_extension"
            case "db_module": "powa_activate_db_module"
            default: "powa_activate_module"
            }
        return "in the repository database: SELECT \(repository.powa(function))(\(server.id), \(SQLLiteral.quote(feature.name)));"
    }

    /// `190000` as `19`, `90600` as `9.6`: how PostgreSQL names its major versions.
    public static func postgresVersion(_ number: Int) -> String {
        number >= 100_000 ? "\(number / 10_000)" : "\(number / 10_000).\(number / 100 % 100)"
    }
}
