/// What the collector's one loop reacts to, from whoever posts it: SIGHUP, the control
/// channel (powa-web's requests), the membership's ticks (servers taken or given up),
/// `Collector.reload()`, the graceful shutdown, and the loop's own runs when they end.
///
/// The loop is the only place that reloads and reconciles the workers: one run at a time,
/// the requests that arrive meanwhile sharing the next run (`ReloadRuns`), while requests that
/// need no run are answered at once.
enum CollectorEvent: Sendable {
    /// Re-read the configuration (`rereadFile`) and the server list, then reconcile the workers;
    /// `answer` (if any) gets how it went once the workers follow.
    case reload(rereadFile: Bool, answer: PendingAnswer<ReloadOutcome>?)
    /// SIGHUP: a reload that nobody waits for.
    case hangup
    /// The membership took or gave up servers: the workers follow (`answer`, if any, once
    /// they do).
    case ownershipChanged(answer: PendingAnswer<ReloadOutcome>?)
    /// A request of powa-web's control protocol, to carry out and answer (RELOAD: once its
    /// reload is done).
    case command(ControlRequest, answer: PendingAnswer<ControlReply>)
    /// The loop's run (a reload, or the workers following the fleet) ended so.
    case runEnded(ReloadOutcome)
    /// The graceful shutdown began: the loop ends.
    case shutdown
}

extension AsyncStream<CollectorEvent>.Continuation {
    /// Posts the event `event(answer)` and waits for its answer; nil when the collector no
    /// longer runs its loop or the caller is cancelled first.
    func ask<Value: Sendable>(_ event: (PendingAnswer<Value>) -> CollectorEvent) async -> Value? {
        let answer = PendingAnswer<Value>()
        guard case .enqueued = yield(event(answer)) else { return nil }
        return await answer.value()
    }
}
