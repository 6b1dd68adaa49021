import PostgresClient

/// Connection parameters every connection of the collector gets unless its connection string
/// says otherwise: TCP keepalives, so a dead peer is noticed, and libpq's own connect timeout.
enum ConnectionDefaults {
    static func keepalives(connectTimeout: Duration) -> [ConnectionConfiguration.Parameter] {
        [
            .init("connect_timeout", "\(max(2, Int(connectTimeout.components.seconds)))"),
            .init("keepalives", "1"), .init("keepalives_idle", "30"),
            .init("keepalives_interval", "10"), .init("keepalives_count", "3"),
        ]
    }
}
