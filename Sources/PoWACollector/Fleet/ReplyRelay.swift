import Synchronization

/// The leader's requests waiting for the owner of their server to answer (FORCE_SNAPSHOT and
/// REFRESH_DB_CAT reach the member that runs the server's worker; the leader sends what that
/// member says on powa-web's channel), by powa-web's reply channel.
///
/// A member's answer arrives on the fleet channel after the request itself (both are
/// notifications of the same repository, delivered in commit order), so the leader has always
/// registered its wait by then.
final class ReplyRelay: Sendable {
    private let pending = Mutex<Set<String>>([])

    /// Waits for a member's answer on `channel`.
    func expect(_ channel: String) { _ = pending.withLock { $0.insert(channel) } }

    /// Whether an answer on `channel` was still awaited (it is no longer).
    func take(_ channel: String) -> Bool { pending.withLock { $0.remove(channel) != nil } }
}
