import Foundation
import Testing
import TestSupport

extension EndToEndTests {
    @Suite("The tracking page in headless Chromium", .serialized)
    struct TrackingPageTests {
        @Test("a tracking link's page follows the SSE stream with its token and draws the drone moving (two screenshots, the drone's dot found in both)")
        func droneMovesOnThePage() async throws {
            // Slow flights, so the drone is still flying between the two screenshots.
            try await withSystem(["FABRIKAM_TIME_SCALE": "3"]) { system in
                let id = try await system.createOverHTTP()
                try await system.waitForStage(id, .headedToPickup)
                // The link a business hands its customer: a token for this delivery, never its key.
                let link = try await system.http("POST", "/v1/deliveries/\(id):trackingLink", body: "{}")
                let path = try #require(link.json["trackingPath"] as? String, "\(link.status) \(link.body)")
                #expect(!path.contains(RunningSystem.demoKey))
                let shots = try makeTemporaryDirectory("tracking-page")
                let output = try await run(projectPython, [
                    repositoryRoot.appendingPathComponent("tools/tracking_page_check.py").path, system.gatewayURL + path, shots.path, "4",
                ])
                let result = try #require(try JSONSerialization.jsonObject(with: output) as? [String: Any])
                #expect(result["first"] is [Double], "the drone is drawn in the first screenshot: \(result)")
                #expect(result["second"] is [Double], "the drone is drawn in the second screenshot: \(result)")
                let moved = try #require(result["moved"] as? Double)
                #expect(moved > 5, "the drone moved \(moved) pixels between the screenshots")
            }
        }
    }
}
