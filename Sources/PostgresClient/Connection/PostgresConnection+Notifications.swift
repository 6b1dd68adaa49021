import CLibPQ

extension PostgresConnection {
    /// Waits for the next NOTIFY on a channel this connection LISTENs to (run `LISTEN` with
    /// `execute` first). Returns nil when `deadline` passes first; throws `.connectionClosed`
    /// as soon as the server goes away, and `CancellationError` when the task is cancelled.
    /// No polling: the task sleeps until the socket is readable.
    public func nextNotification(deadline: ContinuousClock.Instant? = nil) async throws -> PostgresNotification? {
        try state.requireIdle("nextNotification")
        guard let handle else { throw closedError() }
        while true {
            if let notification = PQnotifies(handle) {
                defer { PQfreemem(notification) }
                return PostgresNotification(
                    channel: String(cString: notification.pointee.relname),
                    payload: String(cString: notification.pointee.extra),
                    senderPID: notification.pointee.be_pid
                )
            }
            switch await SocketReactor.shared.wait(fd: PQsocket(handle), for: .read, deadline: deadline) {
            case .ready:
                guard PQconsumeInput(handle) == 1 else { throw lastError(code: .connectionClosed) }
            case .timedOut:
                return nil
            case .cancelled:
                throw CancellationError()
            }
        }
    }

    /// The notifications of this connection as an async sequence; it ends with an error when
    /// the connection is lost.
    public var notifications: Notifications { Notifications(connection: self) }

    /// An async sequence of the NOTIFYs a connection receives.
    public struct Notifications: AsyncSequence {
        public typealias Element = PostgresNotification
        let connection: PostgresConnection

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(connection: connection) }

        /// Iterates over notifications; owned by the connection's task.
        public struct AsyncIterator: AsyncIteratorProtocol {
            let connection: PostgresConnection
            public mutating func next() async throws -> PostgresNotification? {
                try await connection.nextNotification()
            }
        }
    }
}
