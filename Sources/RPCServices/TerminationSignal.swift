#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Suspends until SIGINT or SIGTERM: how a server process knows to shut down gracefully.
/// The handler runs on a dispatch queue, so this is deliberately not main-actor code.
public func waitForTerminationSignal() async {
    signal(SIGINT, SIG_IGN)
    signal(SIGTERM, SIG_IGN)
    let sources = [SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0) }
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumed = Mutex(false)
        for source in sources {
            source.setEventHandler {
                if resumed.withLock({ let was = $0; $0 = true; return !was }) { continuation.resume() }
            }
            source.resume()
        }
    }
    for source in sources { source.cancel() }
}
