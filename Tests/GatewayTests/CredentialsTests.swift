import DroneDeliveryAPI
import Foundation
import Gateway
import Testing

/// Scoped credentials: a business's first admin key from registration, keys with roles, tracking
/// tokens that read one delivery, identity taken from the key only, and rate limits for requests
/// without a valid key.
@Suite("Credentials: registration, roles, tracking tokens, identity, anonymous rate limits")
struct CredentialsTests {
    static let locations = #""pickupLocation":{"latitude":47.61,"longitude":-122.34},"dropoffLocation":{"latitude":47.62,"longitude":-122.35}"#
    static let createBody = #"{\#(locations),"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1}}"#

    @Test("registration returns the first admin key once: a repeat gets the account without a key, another request with the same id 409")
    func registrationReturnsTheFirstKeyOnce() async throws {
        let system = try await InProcessSystem()
        let body = #"{"displayName":"Fabrikam","contactEmail":"ops@fabrikam.example","requestId":"reg-1"}"#
        let first = await system.http("POST", "/v1/accounts", body: body, key: nil)
        #expect(first.status == 201, "\(first)")
        let admin = try #require((first.json["adminKey"] as? [String: Any])?["secret"] as? String, "\(first)")
        #expect((first.json["adminKey"] as? [String: Any]).flatMap { $0["apiKey"] as? [String: Any] }?["role"] as? String == "API_KEY_ROLE_ADMIN")
        let account = try #require((first.json["account"] as? [String: Any])?["accountId"] as? String)
        // The key works, and is an admin's: it can issue keys.
        #expect(await system.http("POST", "/v1/accounts/\(account)/apikeys", body: #"{"displayName":"ci"}"#, key: admin).status == 200)
        let repeated = await system.http("POST", "/v1/accounts", body: body, key: nil)
        #expect(repeated.status == 204 && repeated.body.isEmpty, "the same request again: no second key shown: \(repeated)")
        // Accounts itself issues no second key for the repeat (the gateway's 204 would hide one).
        var register = AccountsV1.RegisterAccountRequest()
        register.displayName = "Fabrikam"
        register.contactEmail = "ops@fabrikam.example"
        register.requestId = "reg-1"
        let again = try await system.accounts.registerAccount(register)
        #expect(!again.created && again.adminKey == nil && again.account?.accountId == account)
        let other = await system.http("POST", "/v1/accounts", body: #"{"displayName":"Someone else","contactEmail":"x@y.example","requestId":"reg-1"}"#, key: nil)
        #expect(other.status == 409, "\(other)")
        #expect(!other.body.contains("Fabrikam") && !other.body.contains("fabrikam.example"), "nothing of the first account: \(other)")
        await system.stop()
    }

    @Test("roles: READ_ONLY reads only, DELIVERIES cannot manage keys or users, ADMIN can; refusals are 403")
    func roles() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        func issue(_ role: String) async throws -> String {
            let answer = await system.http("POST", "/v1/accounts/\(business.account)/apikeys", body: #"{"displayName":"\#(role)","role":"\#(role)"}"#,
                                           key: business.key)
            return try #require(answer.json["secret"] as? String, "\(answer)")
        }
        let readOnly = try await issue("API_KEY_ROLE_READ_ONLY")
        let deliveries = try await issue("API_KEY_ROLE_DELIVERIES")
        #expect(await system.http("GET", "/v1/deliveries", key: readOnly).status == 200)
        #expect(await system.http("GET", "/v1/accounts/\(business.account)", key: readOnly).status == 200)
        let refused = await system.http("POST", "/v1/deliveries", body: Self.createBody, key: readOnly)
        #expect(refused.status == 403 && refused.body.contains("API_KEY_ROLE_READ_ONLY"), "\(refused)")
        #expect(await system.http("PUT", "/v1/packages/p1", body: #"{"size":"PACKAGE_SIZE_SMALL","weight":1}"#, key: readOnly).status == 403)
        #expect(await system.http("POST", "/v1/deliveries", body: Self.createBody, key: deliveries).status == 202)
        #expect(await system.http("POST", "/v1/accounts/\(business.account)/apikeys", body: "{}", key: deliveries).status == 403)
        #expect(await system.http("POST", "/v1/accounts/\(business.account)/users", body: #"{"displayName":"Ann"}"#, key: deliveries).status == 403)
        #expect(await system.http("POST", "/v1/accounts/\(business.account)/users", body: #"{"displayName":"Ann"}"#, key: business.key).status == 201)
        // A role cannot be raised through the key-issuing call: TRACKING keys come from tracking links only.
        #expect(await system.http("POST", "/v1/accounts/\(business.account)/apikeys", body: #"{"role":"API_KEY_ROLE_TRACKING"}"#, key: business.key).status == 400)
        await system.stop()
    }

    @Test("a tracking link's token reads its one delivery (status, stream, history, summary) and nothing else; revoked, it is 401")
    func trackingTokens() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        try await system.scheduleDelivery("dlv-1", account: business.account, packageID: "pkg-1")
        try await system.scheduleDelivery("dlv-2", account: business.account, packageID: "pkg-2")
        let link = await system.http("POST", "/v1/deliveries/dlv-1:trackingLink", body: "{}", key: business.key)
        #expect(link.status == 200, "\(link)")
        let token = try #require(link.json["token"] as? String)
        let path = try #require(link.json["trackingPath"] as? String)
        #expect(path == "/track#delivery=dlv-1&token=\(token)")
        #expect(!path.contains(business.key), "the link never carries the account's key")
        let keyID = try #require((link.json["apiKey"] as? [String: Any])?["keyId"] as? String)
        for readable in ["/v1/deliveries/dlv-1/status", "/v1/deliveries/dlv-1", "/v1/deliveries/dlv-1/history", "/v1/deliveries/dlv-1/summary",
                         "/v1/deliveries/dlv-1:track"] {
            let answer = await system.http("GET", readable, key: token)
            #expect(answer.status == 200, "\(readable): \(answer)")
        }
        for (method, forbidden) in [("GET", "/v1/deliveries/dlv-2/status"), ("GET", "/v1/deliveries"), ("GET", "/v1/accounts/\(business.account)"),
                                    ("DELETE", "/v1/deliveries/dlv-1"), ("GET", "/v1/packages/pkg-1"), ("POST", "/v1/deliveries/dlv-1:trackingLink")] {
            let answer = await system.http(method, forbidden, body: method == "POST" ? "{}" : nil, key: token)
            #expect(answer.status == 403, "\(method) \(forbidden): \(answer)")
        }
        #expect(await system.http("POST", "/v1/deliveries", body: Self.createBody, key: token).status == 403)
        #expect(await system.http("DELETE", "/v1/accounts/\(business.account)/apikeys/\(keyID)", key: business.key).status == 200)
        // Revocation reaches the gateway once its cached validation expires (authCacheSeconds): a new gateway has none.
        let fresh = try Gateway(configuration: system.gateway.configuration)
        var request = GatewayRequest(method: "GET", target: "/v1/deliveries/dlv-1/status", headers: [("Authorization", "Bearer \(token)")], body: [])
        request.clientAddress = "192.0.2.9"
        #expect(await fresh.handle(request).status == 401)
        await fresh.close()
        await system.stop()
    }

    @Test("x-user-id comes from the key, never from the client; forwarding it is refused at start")
    func identityFromTheKeyOnly() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        _ = await system.http("POST", "/v1/accounts/\(business.account)/users", body: #"{"userId":"u-ann","displayName":"Ann"}"#, key: business.key)
        let forged = [("x-user-id", "u-forged"), ("x-account-id", "acct-other")]
        #expect(await system.http("POST", "/v1/deliveries", body: Self.createBody, key: business.key, headers: forged).status == 202)
        let sent = try #require(system.recorder.last("CreateDelivery"))
        #expect(sent["x-user-id"] == nil, "a key of the whole account acts for no user")
        #expect(sent["x-account-id"] == business.account)
        let issued = await system.http("POST", "/v1/accounts/\(business.account)/apikeys", body: #"{"displayName":"Ann's","userId":"u-ann"}"#, key: business.key)
        let annsKey = try #require(issued.json["secret"] as? String, "\(issued)")
        let created = await system.http("POST", "/v1/deliveries", body: Self.createBody, key: annsKey, headers: forged)
        #expect(created.status == 202, "\(created)")
        #expect(system.recorder.last("CreateDelivery")?["x-user-id"] == "u-ann")
        // A user's key cannot act for another user of the account.
        let other = await system.http("POST", "/v1/deliveries", body: #"{"owner":{"userId":"u-bob"},\#(Self.locations),"packageInfo":{"size":"PACKAGE_SIZE_SMALL","weight":1}}"#,
                                      key: annsKey)
        #expect(other.status == 403, "\(other)")
        await system.stop()

        var configuration = GatewayConfiguration()
        configuration.forwardHeaders = ["accept-language", "X-User-Id"]
        let refused = #expect(throws: ConfigurationFileError.self) { try Gateway(configuration: configuration) }
        #expect(refused?.description.contains("X-User-Id") == true, "\(String(describing: refused))")
    }

    @Test("requests without a valid key are rate limited per client address; a valid key is not charged")
    func anonymousRateLimit() async throws {
        let system = try await InProcessSystem { $0.anonymousRateLimit = .init(requestsPerSecond: 0.01, burst: 3) }
        let business = try await system.register("Fabrikam")  // one of 192.0.2.1's three
        let attacker = "198.51.100.7"
        // More requests than the burst, with a valid key: none is charged.
        for _ in 0..<5 {
            #expect(await system.http("GET", "/v1/deliveries", key: business.key, from: attacker).status == 200, "a valid key costs nothing")
        }
        let statuses = await [system.http("GET", "/v1/deliveries", key: "fdk_guess1", from: attacker).status,
                              system.http("GET", "/v1/deliveries", key: nil, from: attacker).status,
                              system.http("GET", "/v1/deliveries", key: "fdk_guess2", from: attacker).status]
        #expect(statuses == [401, 401, 401])
        let limited = await system.http("GET", "/v1/deliveries", key: "fdk_guess3", from: attacker)
        #expect(limited.status == 429 && Int(limited.header("retry-after") ?? "") ?? 0 >= 1, "\(limited)")
        #expect(await system.http("POST", "/v1/accounts", body: #"{"displayName":"X","contactEmail":"x@x.example"}"#, key: nil, from: attacker).status == 429,
                "registrations too")
        #expect(await system.http("GET", "/v1/deliveries", key: "fdk_guess4", from: "198.51.100.8").status == 401, "per address")
        // A key already known valid still works from the limited address.
        #expect(await system.http("GET", "/v1/deliveries", key: business.key, from: attacker).status == 200)
        await system.stop()
    }
}

/// `Idempotency-Key` on public POSTs.
@Suite("Idempotency-Key: the request id of a POST; the same key with another body is 409")
struct IdempotencyKeyTests {
    @Test("creating a delivery: the same key and body answer the first delivery; another body is 409; key and requestId must agree")
    func deliveries() async throws {
        let system = try await InProcessSystem()
        let business = try await system.register("Fabrikam")
        let body = CredentialsTests.createBody
        let first = await system.http("POST", "/v1/deliveries", body: body, key: business.key, headers: [("Idempotency-Key", "order-17")])
        let again = await system.http("POST", "/v1/deliveries", body: body, key: business.key, headers: [("Idempotency-Key", "order-17")])
        let id = try #require(first.json["deliveryId"] as? String, "\(first)")
        #expect(again.status == 202 && again.json["deliveryId"] as? String == id)
        let changed = body.replacingOccurrences(of: #""weight":1"#, with: #""weight":2"#)
        let conflict = await system.http("POST", "/v1/deliveries", body: changed, key: business.key, headers: [("Idempotency-Key", "order-17")])
        #expect(conflict.status == 409, "\(conflict)")
        #expect(!conflict.body.contains(id), "not the first delivery: \(conflict)")
        let other = await system.http("POST", "/v1/deliveries", body: body, key: business.key, headers: [("Idempotency-Key", "order-18")])
        #expect(other.status == 202 && other.json["deliveryId"] as? String != id)
        let disagreeing = body.replacingOccurrences(of: "{", with: #"{"requestId":"order-99","#, options: [], range: body.range(of: "{"))
        #expect(await system.http("POST", "/v1/deliveries", body: disagreeing, key: business.key, headers: [("Idempotency-Key", "order-17")]).status == 400)
        #expect(await system.http("POST", "/v1/deliveries", body: body, key: business.key, headers: [("Idempotency-Key", "bad key")]).status == 400)
        await system.stop()
    }

    @Test("a requestId that is not a string is 400 beside an Idempotency-Key, not overwritten by it")
    func requestIDOfAnotherType() async throws {
        let system = try await InProcessSystem()
        for requestID in ["{}", "[]", "7", "true"] {
            let body = #"{"displayName":"Fabrikam","contactEmail":"ops@fabrikam.example","requestId":"# + requestID + "}"
            let answer = await system.http("POST", "/v1/accounts", body: body, key: nil, headers: [("Idempotency-Key", "signup-\(requestID.count)")])
            #expect(answer.status == 400 && answer.body.contains("requestId"), "\(requestID): \(answer)")
        }
        // null is the field's default: the key fills it.
        let null = #"{"displayName":"Fabrikam","contactEmail":"ops@fabrikam.example","requestId":null}"#
        #expect(await system.http("POST", "/v1/accounts", body: null, key: nil, headers: [("Idempotency-Key", "signup-null")]).status == 201)
        await system.stop()
    }

    @Test("registering: the same key and body are one account (no second key); another body is 409")
    func registration() async throws {
        let system = try await InProcessSystem()
        let body = #"{"displayName":"Fabrikam","contactEmail":"ops@fabrikam.example"}"#
        let first = await system.http("POST", "/v1/accounts", body: body, key: nil, headers: [("Idempotency-Key", "signup-1")])
        #expect(first.status == 201 && first.json["adminKey"] != nil, "\(first)")
        #expect(await system.http("POST", "/v1/accounts", body: body, key: nil, headers: [("Idempotency-Key", "signup-1")]).status == 204)
        let other = #"{"displayName":"Contoso","contactEmail":"ops@contoso.example"}"#
        #expect(await system.http("POST", "/v1/accounts", body: other, key: nil, headers: [("Idempotency-Key", "signup-1")]).status == 409)
        await system.stop()
    }
}
