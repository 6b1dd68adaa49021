import Synchronization

/// Tells its owner when a server stays silent while a statement of the connection waits for
/// it: nothing received for `limit` in one wait (a blackholed network, a remote frozen or
/// blocked). The owner decides, once, whether the wait goes on (it made room for others) or the
/// statement is given up; a server that keeps sending, however slowly, is never reported.
///
/// Installed on a connection with `PostgresConnection.silenceWatch`; it fires at most once.
public final class SilenceWatch: Sendable {
    /// How long a wait for the server may see nothing before the owner is asked.
    public let limit: Duration
    private let decide: @Sendable () -> Bool
    /// 0: not fired; 1: fired, the wait went on; 2: fired, the statement was given up.
    private let state = Atomic<Int>(0)
    /// The longest wait for the server that ended with an answer, in nanoseconds.
    private let longest = Atomic<Int64>(0)

    /// - Parameter decide: called once, when the server has been silent for `limit`; returns
    ///   true for the wait to go on, false for the statement to be given up (the connection is
    ///   then closed after a cancel request is sent, without waiting for the silent server).
    public init(limit: Duration, decide: @escaping @Sendable () -> Bool) {
        self.limit = limit
        self.decide = decide
    }

    /// Whether the watch fired and the statement was given up.
    public var gaveUp: Bool { state.load(ordering: .acquiring) == 2 }

    /// Whether the watch fired (either way).
    public var hasFired: Bool { state.load(ordering: .acquiring) != 0 }

    /// The longest the server took to answer a wait while watched: what a server that is
    /// merely slow needs, so that its owner can give it more next time.
    public var longestWait: Duration { .nanoseconds(longest.load(ordering: .relaxed)) }

    /// Records a wait for the server that ended with an answer (the connection's own waits, or
    /// a caller's, such as a new session's connect).
    public func waited(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        longest.max(seconds * 1_000_000_000 + attoseconds / 1_000_000_000, ordering: .relaxed)
    }

    /// Asks the owner, once; true when the wait goes on. Called by the connection's waits, and
    /// by a caller that met the same silence elsewhere (a new session to the server that does
    /// not connect within `limit`).
    public func fire() -> Bool {
        guard state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged else {
            return !gaveUp
        }
        if decide() { return true }
        state.store(2, ordering: .releasing)
        return false
    }
}
