/// Carries a libpq pointer into a `BlockingCall` thread.
///
/// Sound only under the rule its users keep: the sender does not touch the pointer until the
/// blocking call has returned (it awaits that call), or, when it stops waiting at a deadline,
/// hands the pointer over to the call for good; so the pointer is never used by two threads at
/// once.
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
