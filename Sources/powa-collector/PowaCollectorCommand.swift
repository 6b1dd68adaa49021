import ArgumentParser
import Foundation
import Logging
import PoWACollector
import ServiceLifecycle

/// `powa-collector`: the PoWA remote-mode collector daemon.
@main
struct PowaCollectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "powa-collector",
        abstract: "Collects the statistics of remote PostgreSQL servers into a PoWA repository.",
        discussion: """
            The configuration file is JSON: {"repository": {"dsn": "postgresql://powa@host:5432/powa"}}.
            Without --config, the first existing file of /etc/powa-collector.conf,
            ~/.config/powa-collector.conf, ~/.powa-collector.conf and ./powa-collector.conf is used.
            SIGHUP reloads the configuration and the server list; SIGTERM or SIGINT stops cleanly.
            """,
        version: Collector.version
    )

    @Option(name: .long, help: "The configuration file to use instead of the search path.")
    var config: String?

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        // SIGHUP reloads once the collector runs; before that (start-up waiting for the
        // repository), it must not kill the daemon.
        signal(SIGHUP, SIG_IGN)
        let configuration: CollectorConfiguration
        do {
            configuration = try ConfigurationFile.load(path: config).0
        } catch {
            FileHandle.standardError.write(Data("powa-collector: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let levelSwitch = LogLevelSwitch(configuration.debug ? .debug : .info)
        LoggingSystem.bootstrap { label in levelSwitch.handler(label: label) }
        let logger = Logger(label: "powa-collector")

        let collector = Collector(
            configuration: configuration, configurationPath: config, logger: logger, levelSwitch: levelSwitch)
        let group = ServiceGroup(
            configuration: .init(
                services: [.init(service: collector)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            ))
        do {
            logger.info("powa-collector \(Collector.version) starting")
            try await group.run()
        } catch let error as CollectorError {
            logger.critical("\(error)")
            throw ExitCode(1)
        } catch let error as ServiceGroupError {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}
