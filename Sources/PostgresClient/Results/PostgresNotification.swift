/// A NOTIFY received on a connection that LISTENs.
public struct PostgresNotification: Sendable, Hashable {
    /// The channel it was sent on.
    public let channel: String
    /// The payload, exactly as sent (may be empty).
    public let payload: String
    /// The process id of the sending backend.
    public let senderPID: Int32

    public init(channel: String, payload: String, senderPID: Int32) {
        self.channel = channel
        self.payload = payload
        self.senderPID = senderPID
    }
}
