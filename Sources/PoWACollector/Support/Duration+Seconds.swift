extension Duration {
    /// The duration in seconds, for logs and replies.
    var secondsValue: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    /// The duration for a log line, to a tenth of a second ("0.9 s", "30 s"): whole seconds
    /// would print a first retry delay of 0.9 s as "0 s".
    var logText: String {
        let tenths = (secondsValue * 10).rounded() / 10
        return tenths == tenths.rounded() ? "\(Int(tenths)) s" : "\(tenths) s"
    }
}
