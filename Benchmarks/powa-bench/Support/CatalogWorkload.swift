import PostgresClient
import TestBed

/// PoWA 5's per-database work made heavy: a database of many tables on a remote. The first
/// snapshot of a server imports the catalogs (pg_class, pg_attribute, pg_type, ...) of every
/// database it can connect to, and every snapshot reads pg_stat_all_tables and
/// pg_stat_all_indexes in each of them, so `tables` tables `bench_table_<i> (id int PRIMARY
/// KEY, label text, created timestamptz)` add four pg_class rows each (table, primary key,
/// TOAST table and index), about twenty pg_attribute rows, two pg_type rows, and a row of
/// each statistics view per table and per index. They are created in one DO block: a few
/// seconds for thousands.
enum CatalogWorkload {
    static let database = "bench_catalog"

    struct Size: Sendable {
        /// pg_class and pg_attribute rows of the database.
        let classes: Int
        let attributes: Int
    }

    /// Drops and creates the database on the cluster at `port`, then its tables.
    static func create(bed: TestBed, port: Int, tables: Int) async throws -> Size {
        let admin = try await BenchBed.connect(bed.connectionString(port: port, database: "postgres"))
        defer { admin.close() }
        try await admin.execute("SET client_min_messages = warning")
        try await admin.execute("DROP DATABASE IF EXISTS \(database) WITH (FORCE)")
        try await admin.execute("CREATE DATABASE \(database)")
        let connection = try await BenchBed.connect(bed.connectionString(port: port, database: database))
        defer { connection.close() }
        try await connection.execute(
            """
            DO $$
            BEGIN
                FOR i IN 1..\(tables) LOOP
                    EXECUTE format(
                        'CREATE TABLE bench_table_%s (id int PRIMARY KEY, label text, created timestamptz)', i);
                END LOOP;
            END $$;
            """)
        let row = try await connection.query(
            "SELECT (SELECT count(*) FROM pg_class)::bigint, (SELECT count(*) FROM pg_attribute)::bigint"
        ).rows[0]
        return Size(classes: try row.decode(0, as: Int.self), attributes: try row.decode(1, as: Int.self))
    }
}
