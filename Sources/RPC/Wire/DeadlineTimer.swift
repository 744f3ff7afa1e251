import NIOCore

/// One timer per connection for the earliest deadline of its calls, on either end.
///
/// Nearly every call ends long before its deadline, and scheduling and cancelling a NIO timer
/// for each call was a measurable part of a unary call's cost. Instead the connection arms one
/// timer for the earliest deadline it knows; when it fires, the owner ends the calls whose
/// deadline has passed and arms it again for the next one (`expired`).
struct DeadlineTimer {
    private var timer: Scheduled<Void>?
    private var armedFor: NIODeadline?

    /// Arms the timer for `deadline` unless it is already armed for an earlier one.
    mutating func arm(for deadline: NIODeadline, on loop: any EventLoop, _ fire: @escaping () -> Void) {
        if let armedFor, armedFor <= deadline { return }
        timer?.cancel()
        armedFor = deadline
        timer = loop.assumeIsolated().scheduleTask(deadline: deadline) { fire() }
    }

    /// Call when the timer fired: returns which of `deadlines` have passed (their keys), and
    /// re-arms the timer for the earliest of the others.
    mutating func expired<Key>(among deadlines: some Sequence<(key: Key, deadline: NIODeadline)>, on loop: any EventLoop,
                               _ fire: @escaping () -> Void) -> [Key] {
        timer = nil
        armedFor = nil
        let now = NIODeadline.now()
        var passed: [Key] = []
        var next: NIODeadline?
        for (key, deadline) in deadlines {
            if deadline <= now {
                passed.append(key)
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        if let next { arm(for: next, on: loop, fire) }
        return passed
    }

    mutating func cancel() {
        timer?.cancel()
        timer = nil
        armedFor = nil
    }
}
