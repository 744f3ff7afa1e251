import NIOCore

/// When an HTTP/1.1 connection has been slow or idle for too long: a value-type state machine,
/// fed with what the connection did, asked what to do when its timer fires.
///
/// - A request head must be complete within `header` of its first byte (slowloris: half a head,
///   then silence), and its body within `body` of the head.
/// - A connection with no request being read or answered is closed after `idle`.
///
/// The connection's one timer is never rescheduled per request: it fires at most `tick` (the
/// shortest of the three timeouts) after it was last armed, and `check` says when to fire next.
/// Because any deadline begins after the timer was armed and lasts at least `tick`, the timer
/// never fires after it; the cost is a timer wake-up every `tick` on a busy connection instead
/// of timer operations on every request.
struct HTTP1ReadDeadlines: Sendable {
    /// What timed out.
    enum Expiry: Sendable, Equatable {
        /// A request head or body too slow to arrive: answer 408, then close.
        case request(String)
        /// Nothing happened for `idle`: close quietly.
        case idle
    }

    enum Verdict: Sendable, Equatable {
        /// Check again at this time.
        case checkAgain(at: NIODeadline)
        case expired(Expiry)
    }

    private enum Reading: Equatable {
        case none
        case head(since: NIODeadline)
        case body(since: NIODeadline)
    }

    let header: TimeAmount
    let body: TimeAmount
    let idle: TimeAmount
    /// The longest the timer may wait between two checks.
    let tick: TimeAmount
    private var reading = Reading.none
    /// Requests taken and not yet answered (the one being answered and those queued behind it).
    private var unanswered = 0
    private var idleSince: NIODeadline

    init(header: TimeAmount, body: TimeAmount, idle: TimeAmount, now: NIODeadline) {
        self.header = header
        self.body = body
        self.idle = idle
        tick = min(header, body, idle)
        idleSince = now
    }

    /// Bytes arrived: the first ones of a new request start its head's clock.
    mutating func bytesArrived(at now: NIODeadline) {
        if reading == .none { reading = .head(since: now) }
    }

    /// The head is complete: the body's clock starts.
    mutating func headReceived(at now: NIODeadline) {
        reading = .body(since: now)
    }

    /// The request has arrived whole; it is answered (or waits its turn).
    mutating func requestEnded() {
        reading = .none
        unanswered += 1
    }

    /// An answer is written; with nothing else to answer or read, the connection is idle from now.
    mutating func answerFinished(at now: NIODeadline) {
        unanswered = max(0, unanswered - 1)
        if unanswered == 0 { idleSince = now }
    }

    /// What to do when the timer fires at `now`.
    func check(at now: NIODeadline) -> Verdict {
        let deadline: NIODeadline?
        switch reading {
        case .head(let since):
            if now >= since + header { return .expired(.request("the request head did not arrive within \(Self.seconds(header))")) }
            deadline = since + header
        case .body(let since):
            if now >= since + body { return .expired(.request("the request body did not arrive within \(Self.seconds(body))")) }
            deadline = since + body
        case .none:
            if unanswered == 0 {
                if now >= idleSince + idle { return .expired(.idle) }
                deadline = idleSince + idle
            } else {
                deadline = nil  // answering (a stream may last long): only check again later
            }
        }
        let next = now + tick
        return .checkAgain(at: deadline.map { min($0, next) } ?? next)
    }

    private static func seconds(_ amount: TimeAmount) -> String {
        let seconds = Double(amount.nanoseconds) / 1e9
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : "\(seconds) s"
    }
}
