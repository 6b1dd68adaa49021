import Foundation
import PoWACollector
import Testing

@Suite("Configuration file", .timeLimit(.minutes(4)))
struct ConfigurationTests {
    private func parse(_ text: String) throws(ConfigurationError) -> CollectorConfiguration {
        try ConfigurationFile.parse(Data(text.utf8))
    }

    @Test("the Python collector's keys, defaults, and unknown keys ignored")
    func keys() throws {
        let minimal = try parse(#"{"repository": {"dsn": "postgresql://powa@repo:5432/powa"}}"#)
        #expect(minimal.repositoryDSN == "postgresql://powa@repo:5432/powa")
        #expect(minimal.debug == false)
        #expect(minimal.useServerAlias == false)
        #expect(minimal.maxConcurrentSnapshots == 4)
        let full = try parse(
            #"{"repository": {"dsn": "host=/run/postgresql dbname=powa"}, "debug": true, "use_server_alias": true, "snapshot_timeout": 30, "max_concurrent_snapshots": 8, "connect_timeout": 5, "extra": [1, 2]}"#
        )
        #expect(full.debug && full.useServerAlias)
        #expect(full.snapshotTimeout == 30 && full.connectTimeout == 5 && full.maxConcurrentSnapshots == 8)
    }

    @Test("spool: on by default in the package's directory, 1 GiB and 24 h; its own directory and bounds; false turns it off")
    func spool() throws {
        let spool = try parse(#"{"repository": {"dsn": "x"}}"#).spool
        #expect(spool?.directory == "/var/lib/powa-collector/spool")
        #expect(spool?.maxBytes == 1 << 30 && spool?.maxAge == 86_400)
        let own = try parse(
            #"{"repository": {"dsn": "x"}, "spool": {"directory": "/srv/spool", "max_bytes": 1000000, "max_age": 3600}}"#
        ).spool
        #expect(own?.directory == "/srv/spool" && own?.maxBytes == 1_000_000 && own?.maxAge == 3600)
        #expect(try parse(#"{"repository": {"dsn": "x"}, "spool": false}"#).spool == nil)
    }

    @Test(
        "each mistake gets one actionable message",
        arguments: [
            ("{\"repository\": {\"dsn\": \"x\"},\n  \"debug\": tru }", "invalid JSON"),
            ("{\"debug\": true}", "missing \"repository\""),
            ("{\"repository\": {}}", "missing \"repository.dsn\""),
            ("{\"repository\": \"host=x\"}", "\"repository\" must be an object"),
            ("{\"repository\": {\"dsn\": 5432}}", "\"repository.dsn\" must be a string, not 5432"),
            ("{\"repository\": {\"dsn\": \"x\"}, \"debug\": \"yes\"}", "\"debug\" must be true or false, not a string"),
            ("{\"repository\": {\"dsn\": \"x\"}, \"use_server_alias\": 1}", "\"use_server_alias\" must be true or false, not 1"),
            ("{\"repository\": {\"dsn\": \"x\"}, \"snapshot_timeout\": -1}", "\"snapshot_timeout\" must be a positive number"),
            (
                "{\"repository\": {\"dsn\": \"x\"}, \"max_concurrent_snapshots\": 2.5}",
                "\"max_concurrent_snapshots\" must be a whole number"
            ),
            ("[1, 2]", "must be a JSON object"),
            ("{\"repository\": {\"dsn\": \"x\"}, \"spool\": \"/tmp\"}", "\"spool\" must be false or an object"),
            (
                "{\"repository\": {\"dsn\": \"x\"}, \"spool\": {\"directory\": \"spool\"}}",
                "\"spool.directory\" must be an absolute path"
            ),
            ("{\"repository\": {\"dsn\": \"x\"}, \"spool\": {\"max_bytes\": 0}}", "\"spool.max_bytes\" must be a whole number"),
            ("{\"repository\": {\"dsn\": \"x\"}, \"spool\": {\"max_age\": -1}}", "\"spool.max_age\" must be a positive number"),
        ])
    func mistakes(text: String, message: String) {
        #expect {
            _ = try parse(text)
        } throws: { error in
            (error as? ConfigurationError)?.message.contains(message) == true
        }
    }

    @Test("a configuration error names the key and the expected type, never a string's value (a DSN may hold a password)")
    func errorsNeverEchoStrings() {
        for text in [
            "{\"repository\": \"postgresql://powa:S3cret@db/powa\"}",
            "{\"repository\": {\"dsn\": \"x\"}, \"debug\": \"postgresql://powa:S3cret@db/powa\"}",
        ] {
            #expect {
                _ = try parse(text)
            } throws: { error in
                let message = (error as? ConfigurationError)?.message ?? ""
                return !message.isEmpty && !message.contains("S3cret")
            }
        }
    }
}
