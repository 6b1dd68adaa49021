import PostgresClient

/// Sends the collector's control requests at a steady pace, as powa-web would (a user pressing
/// "reload" and "force snapshot"), and counts the answers: `NOTIFY powa_collector` with
/// `COMMAND reply_channel [args]`, the answer arriving as a NOTIFY on `reply_channel`
/// (`COMMAND STATUS DATA`).
///
/// One connection of its own, owned by the task that runs `run`; it is opened again whenever the
/// repository goes away (a repository restart), and requests that could not be sent meanwhile
/// are not counted as sent. The counts are shared through `counts` while it runs.
struct ControlDriver: Sendable {
    /// What was sent and answered so far.
    struct Counts: Sendable {
        var reloadsSent = 0
        /// RELOAD answers by status word (`OK`, `ERROR`...).
        var reloadAnswers: [String: Int] = [:]
        var forcesSent = 0
        /// FORCE_SNAPSHOT answers by status and data (`OK Snapshot will begin shortly`,
        /// `ERROR Last snapshot was less than 10s. ago`...).
        var forceAnswers: [String: Int] = [:]
        /// Times the driver lost its connection (and opened a new one).
        var reconnects = 0

        var reloadsAnswered: Int { reloadAnswers.values.reduce(0, +) }
        var forcesAnswered: Int { forceAnswers.values.reduce(0, +) }
        var reloadsOK: Int { reloadAnswers["OK"] ?? 0 }
    }

    static let reloadChannel = "powa_bench_soak_reload"
    static let forceChannel = "powa_bench_soak_force"

    /// The repository database the collector LISTENs on.
    let connectionString: String
    /// Seconds between two RELOADs.
    let reloadEvery: Double
    /// Seconds between two FORCE_SNAPSHOTs (0: none), each to the next of `serverIDs`.
    let forceEvery: Double
    let serverIDs: [Int]
    let counts: Locked<Counts>
    /// Whether requests are sent now (answers are counted either way).
    private let sending = Locked(true)

    /// Stops sending requests, still counting the answers to those sent.
    func pause() { sending.withLock { $0 = false } }

    /// Sends requests again, from now on.
    func resume() { sending.withLock { $0 = true } }

    /// Sends and counts until the task is cancelled.
    func run() async {
        let clock = ContinuousClock()
        var nextReload = clock.now
        var nextForce = clock.now + .seconds(forceEvery / 2)
        var forced = 0
        var connection: PostgresConnection?
        defer { connection?.close() }
        while !Task.isCancelled {
            do {
                if connection == nil {
                    let fresh = try await BenchBed.connect(connectionString)
                    connection = fresh
                    try await fresh.execute("LISTEN \(Self.reloadChannel); LISTEN \(Self.forceChannel)")
                }
                guard let listening = connection else { continue }
                let now = clock.now
                let active = sending.withLock { $0 }
                if !active {
                    // Paused: the grid moves on, so that resuming sends nothing at once.
                    nextReload = Self.next(after: nextReload, every: reloadEvery, now: now)
                    if forceEvery > 0 { nextForce = Self.next(after: nextForce, every: forceEvery, now: now) }
                } else if now >= nextReload {
                    try await send("RELOAD \(Self.reloadChannel)", on: listening)
                    counts.withLock { $0.reloadsSent += 1 }
                    nextReload = Self.next(after: nextReload, every: reloadEvery, now: now)
                }
                if active, forceEvery > 0, !serverIDs.isEmpty, now >= nextForce {
                    let id = serverIDs[forced % serverIDs.count]
                    forced += 1
                    try await send("FORCE_SNAPSHOT \(Self.forceChannel) \(id)", on: listening)
                    counts.withLock { $0.forcesSent += 1 }
                    nextForce = Self.next(after: nextForce, every: forceEvery, now: now)
                }
                let wake = forceEvery > 0 ? min(nextReload, nextForce) : nextReload
                while let notification = try await listening.nextNotification(deadline: wake) {
                    record(notification)
                }
            } catch {
                if Task.isCancelled { return }
                // The repository went away (or refused us): connect again shortly.
                if let lost = connection {
                    lost.close()
                    connection = nil
                    counts.withLock { $0.reconnects += 1 }
                }
                try? await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// The next due time after `due` on the grid of `every`, skipping the slots missed while the
    /// repository was away.
    private static func next(
        after due: ContinuousClock.Instant, every: Double, now: ContinuousClock.Instant
    ) -> ContinuousClock.Instant {
        var next = due + .seconds(every)
        while next <= now { next += .seconds(every) }
        return next
    }

    private func send(_ payload: String, on connection: PostgresConnection) async throws {
        _ = try await connection.query("SELECT pg_notify('powa_collector', $1)", [payload])
    }

    /// Counts an answer: `COMMAND STATUS DATA`.
    private func record(_ notification: PostgresNotification) {
        let words = notification.payload.split(separator: " ", maxSplits: 2).map(String.init)
        guard words.count >= 2 else { return }
        let answer = words.dropFirst().joined(separator: " ")
        switch notification.channel {
        case Self.reloadChannel:
            counts.withLock { $0.reloadAnswers[words[1], default: 0] += 1 }
        case Self.forceChannel:
            counts.withLock { $0.forceAnswers[answer, default: 0] += 1 }
        default:
            break
        }
    }
}
