import ArgumentParser
import Foundation
import Logging
import PoWACollector
import ServiceLifecycle

/// `powa-collector [run]`: the daemon (the default command, so that `powa-collector --config
/// PATH` starts it as the Python collector's command line does).
struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the collector daemon (the default command).",
        discussion: """
            The configuration file is JSON: {"repository": {"dsn": "postgresql://powa@host:5432/powa"}}.
            Without --config, the file named by POWA_COLLECTOR_CONFIG is used, else the first
            existing file of /etc/powa-collector.conf, ~/.config/powa-collector.conf,
            ~/.powa-collector.conf and ./powa-collector.conf.
            POWA_COLLECTOR_REPOSITORY_DSN, or POWA_COLLECTOR_REPOSITORY_DSN_FILE (a file holding the
            DSN, read again at each reload), overrides repository.dsn; with one of them no file is
            needed. libpq's own variables (PGPASSWORD, PGPASSFILE, PGSSLMODE...) apply as usual.
            SIGHUP reloads the configuration and the server list; SIGTERM or SIGINT stops cleanly.

            Example: powa-collector --config /etc/powa-collector.conf --log-format json
            """
    )

    /// How long a graceful shutdown (SIGTERM, SIGINT) may take before the service group
    /// escalates it to task cancellation: 7 s, so that the daemon exits within 10 s even with
    /// its remotes frozen (`LifecycleTests`' frozen remotes and SIGTERM).
    ///
    /// A graceful stop cancels the workers (each rolls back the snapshot it may be taking) and
    /// closes every session: within 5 s, a frozen remote included (its cancel request, which
    /// gets no answer, is given up after 2 s). Anything still waiting at 7 s waits for what
    /// only cancellation ends (the HTTP endpoint's connections, say), and cancellation leaves
    /// it the 3 s that remain. (systemd's `TimeoutStopSec=` and Kubernetes' grace period, 90 s
    /// and 30 s by default, are never reached.)
    static let maximumGracefulShutdownDuration: Duration = .seconds(7)

    @OptionGroup var options: ConfigurationOptions

    @Option(name: .long, help: "Log lines as text or json (overrides log_format).")
    var logFormat: LogFormat?

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        // SIGHUP reloads once the collector runs; before that (start-up waiting for the
        // repository), it must not kill the daemon.
        signal(SIGHUP, SIG_IGN)
        let (configuration, origin) = try options.loadWithOrigin()
        let levelSwitch = LogLevelSwitch(configuration.debug ? .debug : .info)
        let format = logFormat ?? configuration.logFormat
        LoggingSystem.bootstrap { label in levelSwitch.handler(label: label, format: format) }
        let logger = Logger(label: "powa-collector")

        let collector = Collector(
            configuration: configuration, configurationSource: options.source, logger: logger, levelSwitch: levelSwitch,
            notifier: SystemdNotifier(), metrics: configuration.httpListen.map { _ in CollectorMetrics() })
        // The collector's end (a stop before the repository could be reached) ends the HTTP
        // endpoint too; the endpoint failing (its port taken) stops the daemon.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: collector, successTerminationBehavior: .gracefullyShutdownGroup)
        ]
        if let address = configuration.httpListen {
            // First in the list: shut down last, after the workers.
            services.insert(.init(service: HTTPEndpoint.service(for: collector, address: address, logger: logger)), at: 0)
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = Self.maximumGracefulShutdownDuration
        let group = ServiceGroup(configuration: groupConfiguration)
        do {
            logger.info("powa-collector \(Collector.version) starting", metadata: ["file": "\(origin)"])
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

extension LogFormat: ExpressibleByArgument {}
