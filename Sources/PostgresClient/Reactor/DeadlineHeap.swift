/// The deadlines of the reactor's waits, one per key (a socket), in a binary min-heap that
/// knows where each key sits: the earliest is read in O(1), and setting, moving or removing
/// a key's deadline costs O(log n). The reactor's loop then never scans every waiter, which
/// matters with a thousand servers each waiting on a socket.
struct DeadlineHeap<Key: Hashable> {
    private var entries: [(deadline: ContinuousClock.Instant, key: Key)] = []
    private var positions: [Key: Int] = [:]

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }

    /// The earliest deadline, if any.
    var earliest: ContinuousClock.Instant? { entries.first?.deadline }

    /// The deadline of `key`, if it has one.
    func deadline(of key: Key) -> ContinuousClock.Instant? {
        positions[key].map { entries[$0].deadline }
    }

    /// Gives `key` this deadline, replacing the one it had.
    mutating func set(_ key: Key, deadline: ContinuousClock.Instant) {
        if let position = positions[key] {
            let previous = entries[position].deadline
            entries[position].deadline = deadline
            if deadline < previous { siftUp(position) } else { siftDown(position) }
        } else {
            entries.append((deadline, key))
            positions[key] = entries.count - 1
            siftUp(entries.count - 1)
        }
    }

    /// Removes the deadline of `key`, if any.
    mutating func remove(_ key: Key) {
        guard let position = positions.removeValue(forKey: key) else { return }
        let last = entries.count - 1
        if position != last {
            entries.swapAt(position, last)
            positions[entries[position].key] = position
        }
        entries.removeLast()
        if position < entries.count {
            siftDown(position)
            siftUp(position)
        }
    }

    /// Removes and returns every key whose deadline is at or before `now`, earliest first.
    mutating func removeExpired(now: ContinuousClock.Instant) -> [Key] {
        var expired: [Key] = []
        while let first = entries.first, first.deadline <= now {
            expired.append(first.key)
            remove(first.key)
        }
        return expired
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child].deadline < entries[parent].deadline else { return }
            swap(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < entries.count, entries[left].deadline < entries[smallest].deadline { smallest = left }
            if right < entries.count, entries[right].deadline < entries[smallest].deadline { smallest = right }
            guard smallest != parent else { return }
            swap(parent, smallest)
            parent = smallest
        }
    }

    private mutating func swap(_ a: Int, _ b: Int) {
        entries.swapAt(a, b)
        positions[entries[a].key] = a
        positions[entries[b].key] = b
    }
}
