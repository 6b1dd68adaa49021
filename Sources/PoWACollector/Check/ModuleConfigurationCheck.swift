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
            for module in try await repository.modulesMissing(
                serverID: server.id, remoteVersion: remoteVersion, deadline: deadline)
            {
                warnings.append(missing(module.name))
            }
            let hidden = try await repository.modulesHiddenByRepositoryVersion(
                serverID: server.id, remoteVersion: remoteVersion, deadline: deadline)
            for module in hidden.modules {
                warnings.append(self.hidden(module, repositoryVersion: hidden.repositoryVersion))
            }
            for retention in try await repository.unresolvedRetentions(serverID: server.id, deadline: deadline) {
                warnings.append(unresolved(retention))
            }
        } catch {
            warnings.append(.init(check: "modules", ok: false, detail: "cannot read powa's module configuration: \(error)"))
        }
        return warnings
    }

    func missing(_ module: String) -> CheckReport.Item {
        .init(
            check: "modules", ok: false,
            detail: "module \(module) is active on the repository (server 0) but was never activated for this server,"
                + " as when it was registered before an upgrade of powa: it is not snapshotted",
            hint: "SELECT powa_activate_module(\(server.id), \(Self.literal(module))) in the repository")
    }

    func hidden(_ module: PoWARepository.Module, repositoryVersion: Int) -> CheckReport.Item {
        let needed = Self.postgresVersion(module.minimumVersion)
        return .init(
            check: "modules", ok: false,
            detail: "module \(module.name) needs PostgreSQL \(needed), which this server runs, but the repository runs"
                + " PostgreSQL \(Self.postgresVersion(repositoryVersion)): powa_functions hides a module newer than"
                + " the repository's PostgreSQL from every server, so it is not snapshotted",
            hint: "upgrade the repository's PostgreSQL to \(needed) or later")
    }

    func unresolved(_ retention: PoWARepository.UnresolvedRetention) -> CheckReport.Item {
        let activate =
            switch retention.kind {
            case "extension": "powa_activate_extension"
            case "db_module": "powa_activate_db_module"
            default: "powa_activate_module"
            }
        return .init(
            check: "retention", ok: false,
            detail: "powa cannot resolve the retention of \(retention.kind) \(retention.name) for this server"
                + " (\(retention.error)): its purge fails at every snapshot",
            hint: "SELECT \(activate)(\(server.id), \(Self.literal(retention.name))) in the repository")
    }

    /// `190000` as `19`, `90600` as `9.6`: how PostgreSQL names its major versions.
    public static func postgresVersion(_ number: Int) -> String {
        number >= 100_000 ? "\(number / 10_000)" : "\(number / 10_000).\(number / 100 % 100)"
    }

    /// A name as an SQL string literal, for a hint to paste.
    static func literal(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
