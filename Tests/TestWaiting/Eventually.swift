/// Waits until `condition` holds, asking again every `interval`, for at most `timeout`;
/// returns whether it held. The one way tests wait for a condition: no fixed sleeps.
public func eventually(
    timeout: Duration = .seconds(30), interval: Duration = .milliseconds(100),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        guard ContinuousClock.now < deadline else { return false }
        try await Task.sleep(for: interval)
    }
}
