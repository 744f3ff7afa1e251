import NIOCore

/// Runs Swift tasks on a NIO event loop. Handlers run with this executor preference, so a call's
/// handler, its request stream and its response writes all stay on the connection's thread:
/// no hop between the event loop and the cooperative pool per message.
public final class EventLoopTaskExecutor: TaskExecutor {
    public let eventLoop: EventLoop

    public init(_ eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
