import Foundation

/// What `powa-collector check` found: the repository, then each server, each check with ✓ or
/// ✗, what it saw, and for a ✗ a one-line hint of what to do. Warnings (⚠) name what works but
/// loses data, each with its fix; they do not change the exit status.
public struct CheckReport: Sendable, Equatable {
    public struct Item: Sendable, Equatable {
        /// `connection`, `powa`, `privileges`, `sources`, `databases`, or a source's name.
        public var check: String
        public var ok: Bool
        public var detail: String
        public var hint: String?
    }

    public struct Server: Sendable, Equatable {
        public var id: Int
        public var name: String
        public var items: [Item] = []
        /// What works but loses data (their `ok` is false).
        public var warnings: [Item] = []
        public var usable: Bool { items.allSatisfy(\.ok) }
    }

    public var repository: Item
    public var servers: [Server] = []

    /// Whether the collector can do all its work: exit 0.
    public var usable: Bool { repository.ok && servers.allSatisfy(\.usable) }

    /// The table for a terminal: one row per server, then one line per ✗ with its hint.
    public var text: String {
        var lines = ["repository  \(Self.mark(repository.ok)) \(repository.detail)"]
        if let hint = repository.hint { lines.append("  hint: \(hint)") }
        guard repository.ok else { return lines.joined(separator: "\n") + "\n" }
        let columns = ["connection", "powa", "privileges", "sources", "databases"]
        var rows = [["srvid", "server"] + columns]
        for server in servers {
            rows.append(
                ["\(server.id)", server.name]
                    + columns.map { column in
                        guard let item = server.items.first(where: { $0.check == column }) else {
                            // A failed source has an item of its own; "sources" sums them up.
                            return "-"
                        }
                        // Short details where they fit (versions); the rest below the table.
                        let short = item.ok && (column == "connection" || column == "powa") ? " " + item.detail : ""
                        return Self.mark(item.ok) + short
                    })
        }
        lines.append("")
        lines += TextTable.lines(rows)
        let problems = servers.flatMap { server in server.items.filter { !$0.ok }.map { (server, $0) } }
        if !problems.isEmpty { lines.append("") }
        for (server, item) in problems {
            lines.append("✗ \(server.id) \(server.name) \(item.check): \(item.detail)")
            if let hint = item.hint { lines.append("  hint: \(hint)") }
        }
        let warnings = servers.flatMap { server in server.warnings.map { (server, $0) } }
        if !warnings.isEmpty { lines.append("") }
        for (server, item) in warnings {
            lines.append("⚠ \(server.id) \(server.name) \(item.check): \(item.detail)")
            if let hint = item.hint { lines.append("  hint: \(hint)") }
        }
        lines.append("")
        let usable = servers.filter(\.usable).count
        lines.append(
            "\(servers.count) server\(servers.count == 1 ? "" : "s"): \(usable) usable"
                + (warnings.isEmpty ? "" : ", \(warnings.count) warning\(warnings.count == 1 ? "" : "s")"))
        return lines.joined(separator: "\n") + "\n"
    }

    /// The same for a machine.
    public var json: String {
        func item(_ item: Item) -> [String: Any] {
            var object: [String: Any] = ["check": item.check, "ok": item.ok, "detail": item.detail]
            if let hint = item.hint { object["hint"] = hint }
            return object
        }
        let object: [String: Any] = [
            "usable": usable, "repository": item(repository),
            "servers": servers.map { server in
                [
                    "srvid": server.id, "server": server.name, "usable": server.usable,
                    "checks": server.items.map(item), "warnings": server.warnings.map(item),
                ] as [String: Any]
            },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    static func mark(_ ok: Bool) -> String { ok ? "✓" : "✗" }
}
