import Foundation
import Testing
import TestSupport

extension EndToEndTests {
    @Suite("The gateway's OpenAPI document, checked by tools nobody here wrote", .serialized)
    struct OpenAPITests {
        @Test("openapi-spec-validator accepts it, and schemathesis finds no 5xx and no answer that breaks the schema")
        func schemathesis() async throws {
            try await withSystem { system in
                let document = try makeTemporaryDirectory("openapi").appendingPathComponent("openapi.json")
                let answer = try await system.http("GET", "/openapi.json", key: nil)
                #expect(answer.status == 200)
                try Data(answer.body.utf8).write(to: document)
                try await run(projectPython, ["-c", "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))", document.path])
                // A delivery to find, so calls by id reach the services and not only 404.
                let id = try await system.createOverHTTP()
                try await system.waitForStage(id, .completed)
                let output = try await run(repositoryRoot.appendingPathComponent(".venv/bin/schemathesis").path, [
                    "run", "\(system.gatewayURL)/openapi.json", "-H", "Authorization: Bearer \(RunningSystem.demoKey)",
                    "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
                    "--max-examples", "25", "--phases", "examples,coverage,fuzzing", "--generation-deterministic",
                    "--max-response-time", "5",
                ])
                let text = String(decoding: output, as: UTF8.self)
                #expect(text.contains(" passed"), "\(text.suffix(2000))")
            }
        }
    }
}
