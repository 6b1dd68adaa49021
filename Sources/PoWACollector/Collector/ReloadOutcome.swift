/// How a reload went, for whoever asked for it: a RELOAD's answer (which
/// `powa-collector reload` turns into its exit status), the reloads metric.
public enum ReloadOutcome: Sendable, Equatable {
    /// The configuration file and the server list were read; the workers follow them.
    case reloaded
    /// The configuration file was rejected (why), the running configuration kept; the server
    /// list was read all the same.
    case configurationRejected(String)
    /// The server list could not be read: the workers were left as they were.
    case serverListUnread
    /// The requester stopped waiting (the collector is stopping) before a reload ran.
    case interrupted
}
