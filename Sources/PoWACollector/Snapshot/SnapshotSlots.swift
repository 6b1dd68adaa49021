/// The repository's snapshot slots, as a value: who gets a slot, who waits, who takes a slot
/// given back. `SnapshotLimiter` carries out its decisions.
///
/// Two lanes, each with its own slots, so that remotes that do not answer can never hold the
/// slots the others need:
/// - **regular** (`max_concurrent_snapshots`): every snapshot starts here;
/// - **suspects** (half as many, at least one): a snapshot whose remote went silent moves here
///   at once (its regular slot goes to the next waiter), and a server whose last snapshot
///   ran out of time or was given up waits here for its next one.
///
/// So at most `regular + suspects` snapshots hold a repository session at once.
struct SnapshotSlots: Equatable, Sendable {
    enum Lane: Equatable, Sendable {
        case regular, suspects
    }

    let regularCapacity: Int
    let suspectCapacity: Int
    private(set) var regularInUse = 0
    private(set) var suspectsInUse = 0
    /// The requests waiting for a slot, in their order of arrival, by lane.
    private(set) var regularQueue: [UInt64] = []
    private(set) var suspectQueue: [UInt64] = []

    init(permits: Int) {
        regularCapacity = max(1, permits)
        suspectCapacity = max(1, regularCapacity / 2)
    }

    /// Every snapshot that may hold a repository session at once.
    var sessionBound: Int { regularCapacity + suspectCapacity }
    var inUse: Int { regularInUse + suspectsInUse }
    var waiting: Int { regularQueue.count + suspectQueue.count }

    /// Takes a slot of `lane` when one is free (true), else queues the request.
    mutating func request(_ id: UInt64, lane: Lane) -> Bool {
        switch lane {
        case .regular where regularInUse < regularCapacity && regularQueue.isEmpty:
            regularInUse += 1
        case .suspects where suspectsInUse < suspectCapacity && suspectQueue.isEmpty:
            suspectsInUse += 1
        case .regular:
            regularQueue.append(id)
            return false
        case .suspects:
            suspectQueue.append(id)
            return false
        }
        return true
    }

    /// Takes back a request still waiting (its task was cancelled); false when it was not.
    mutating func withdraw(_ id: UInt64) -> Bool {
        if let index = regularQueue.firstIndex(of: id) {
            regularQueue.remove(at: index)
            return true
        }
        if let index = suspectQueue.firstIndex(of: id) {
            suspectQueue.remove(at: index)
            return true
        }
        return false
    }

    /// A slot of `lane` given back; returns the request that takes it, if one waits.
    mutating func release(_ lane: Lane) -> UInt64? {
        switch lane {
        case .regular:
            if !regularQueue.isEmpty { return regularQueue.removeFirst() }
            regularInUse -= 1
        case .suspects:
            if !suspectQueue.isEmpty { return suspectQueue.removeFirst() }
            suspectsInUse -= 1
        }
        return nil
    }

    /// The holder of a regular slot whose remote went silent: into the suspects' lane when it
    /// has room (`.moved`, with the request that takes the regular slot, if one waits), else
    /// `.laneFull` and nothing changes (the caller gives its snapshot up).
    mutating func moveToSuspects() -> Move {
        guard suspectsInUse < suspectCapacity else { return .laneFull }
        suspectsInUse += 1
        return .moved(handingOverTo: release(.regular))
    }

    enum Move: Equatable {
        case moved(handingOverTo: UInt64?)
        case laneFull
    }

    /// How long a snapshot's remote may send nothing before the snapshot leaves its regular
    /// slot. Short, because every remote cut off costs the others that long of a slot once
    /// (fifty at 0.5 s over four slots: about 6 s): 0.5 s for a server's first snapshot, then
    /// twice the longest its remote took to answer in its last snapshot that landed (a large
    /// pg_stat_statements sends its first row only once it has read every text), at most
    /// half a period. A server that needs longer still snapshots: in the suspects' lane.
    static func silenceLimit(frequency: Duration, longestWait: Duration?) -> Duration {
        min(max(.milliseconds(500), (longestWait ?? .zero) * 2), frequency / 2)
    }
}
