/// Which run the collector's loop starts, and whom each run answers: pure, so that the
/// coalescing is tested without a server, and so that the loop only carries the runs out.
///
/// One run at a time: a reload never interleaves with another, so the fleet's bookkeeping is
/// never seen half-done. A request that arrives while a run goes on is served by the next
/// one, and every request waiting by then shares that next run: they all asked for the state
/// as it is now.
struct ReloadRuns<Waiter> {
    enum Run: Equatable {
        /// The configuration (re-read when `rereadFile`) and the server list, then the workers.
        case reload(rereadFile: Bool)
        /// The workers follow the servers this collector owns now (every reload ends so too).
        case followAssignment
    }

    /// The run going on, if any.
    private(set) var running: Run?
    /// The next run: the latest reload asked for, else the workers following the fleet.
    private var next: Run?
    /// Requests for the next run.
    private var waiting: [Waiter] = []
    /// Requests the run going on serves.
    private var served: [Waiter] = []

    init() {}

    /// A request (answered through `waiter`, if any): returns the run to start now, if any.
    mutating func request(_ run: Run, waiter: Waiter? = nil) -> Run? {
        if let waiter { waiting.append(waiter) }
        if case .reload = run { next = run } else if next == nil { next = run }
        return startNext()
    }

    /// The run going on ended: the requests it served, and the run to start now, if any.
    mutating func ended() -> (served: [Waiter], next: Run?) {
        running = nil
        let done = served
        served = []
        return (done, startNext())
    }

    /// Every request not served yet (the loop ends: they get no run).
    mutating func abandon() -> [Waiter] {
        defer {
            waiting = []
            served = []
            next = nil
        }
        return served + waiting
    }

    private mutating func startNext() -> Run? {
        guard running == nil, let run = next else { return nil }
        running = run
        next = nil
        served = waiting
        waiting = []
        return run
    }
}
