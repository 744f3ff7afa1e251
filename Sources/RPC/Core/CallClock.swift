#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The clock a call's timings are read from: the system's monotonic clock (`CLOCK_MONOTONIC`)
/// as whole nanoseconds. A server call reads it once when it starts
/// (`ServerContext.startNanoseconds`); its metrics, its log line and its span measure from that
/// reading. Plain integers: `ContinuousClock.Instant`'s 128-bit arithmetic (a difference, then
/// nanoseconds out of attoseconds) was a measurable part of a counted and traced call's cost.
public enum CallClock {
    /// Nanoseconds on the monotonic clock (from an unspecified start: only differences mean
    /// anything, and only within one boot).
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}
