/// Delays between reconnection attempts: doubling from one second up to a ceiling, with a
/// little jitter so that many workers cut off together do not retry in lockstep.
struct Backoff {
    var initial: Duration = .seconds(1)
    var ceiling: Duration = .seconds(30)
    private var attempts = 0

    init(initial: Duration = .seconds(1), ceiling: Duration = .seconds(30)) {
        self.initial = initial
        self.ceiling = ceiling
    }

    /// The delay before the next attempt.
    mutating func next() -> Duration {
        let exponent = min(attempts, 16)
        attempts += 1
        let base = min(initial * (1 << exponent), ceiling)
        return base * Double.random(in: 0.9...1.1)
    }

    mutating func reset() { attempts = 0 }
}
