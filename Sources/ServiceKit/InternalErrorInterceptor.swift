import Logging
import RPC

/// Keeps internal error text (a database's message and statement, a decoding failure) out of a
/// service's answers: a handler that fails with INTERNAL, UNKNOWN or DATA_LOSS, or with an error
/// that is not an `RPCError` at all (a `SQLiteError`), answers INTERNAL with the request id, and
/// the text goes to the log under that id. Other codes are the service's own answers and pass.
public struct InternalErrorInterceptor: ServerInterceptor {
    let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    public func intercept(_ context: ServerContext, next: (ServerContext) async throws -> Void) async throws {
        do {
            try await next(context)
        } catch let error as RPCError where ![.internal, .unknown, .dataLoss].contains(error.code) {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            let requestID = context.metadata["x-request-id"] ?? RequestTrace.current?.correlationId ?? randomHex(bytes: 8)
            logger.error("internal error", metadata: ["method": "\(context.method.path)", "request_id": "\(requestID)", "error": "\(error)"])
            throw RPCError(.internal, "internal error (request id \(requestID)); the details are in the service's log")
        }
    }
}
