import ProtobufKit

extension RPCClient {
    /// Streams both ways for a method known only at run time (a command-line client calling
    /// a method it found by reflection, or one given its descriptor): `body` writes requests and
    /// reads responses, in any interleaving. A client-streaming method is called the same way,
    /// reading its one response.
    public func bidirectional<Input: Message, Output: Message, Result: Sendable>(
        _ method: MethodDescriptor, requestType: Input.Type, responseType: Output.Type, options: CallOptions = CallOptions(),
        _ body: (RequestWriter<Input>, ResponseStream<Output>) async throws -> Result
    ) async throws -> Result {
        try await intercepted(method, options) { options in
            let current = try await startStreamingCall(method, options)
            return try await running(current) {
                let result = try await body(RequestWriter(current: current), ResponseStream(current))
                current.call.cancelIfOpen()
                return result
            }
        }
    }
}
