extension Duration {
    /// The duration in seconds, for logs and replies.
    var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
