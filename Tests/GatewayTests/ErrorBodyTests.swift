import Foundation
@testable import Gateway
import ProtobufKit
import RPC
import Testing
import TestSupport

/// The gateway's error body is google.rpc.Status in the canonical JSON mapping, details included
/// (each Any as {"@type": ..., fields}).
@Suite("Gateway error bodies")
struct ErrorBodyTests {
    @Test("an RPC error's details reach the JSON body with @type, as Google's runtime reads them")
    func detailsInBody() async throws {
        var error = RPCError(.invalidArgument, "the delivery request is invalid")
        try error.addFieldViolation("package_info.weight", "must be more than 0")
        var retry = Google.Rpc.RetryInfo()
        var delay = Google.Protobuf.Duration()
        delay.seconds = 2
        retry.retryDelay = delay
        try error.addDetail(retry)
        let body = String(decoding: Gateway.statusJSON(error), as: UTF8.self)
        #expect(body == #"{"code":3,"message":"the delivery request is invalid","details":[{"@type":"type.googleapis.com/google.rpc.BadRequest","#
            + #""fieldViolations":[{"field":"package_info.weight","description":"must be more than 0"}]},"#
            + #"{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"2s"}]}"#)

        // Google's Python runtime (protobuf with googleapis-common-protos) parses the same body.
        let script = """
        import sys
        from google.protobuf import json_format
        from google.rpc import error_details_pb2, status_pb2
        status = json_format.Parse(sys.stdin.read(), status_pb2.Status())
        bad, retry = error_details_pb2.BadRequest(), error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(bad) and status.details[1].Unpack(retry)
        print(status.code, bad.field_violations[0].field, retry.retry_delay.seconds)
        """
        let output = String(decoding: try await run(projectPython, ["-c", script], input: Data(body.utf8)), as: UTF8.self)
        #expect(output == "3 package_info.weight 2\n")
    }

    @Test("without details the body is code and message only")
    func noDetails() {
        #expect(String(decoding: Gateway.statusJSON(RPCError(.notFound, "no delivery d1")), as: UTF8.self) == #"{"code":5,"message":"no delivery d1"}"#)
    }
}
