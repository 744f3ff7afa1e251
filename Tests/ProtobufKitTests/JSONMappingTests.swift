import ProtobufKit
import Testing
import TestMessages

@Suite("Canonical proto3 JSON mapping")
struct JSONMappingTests {
    @Test("every field kind survives JSON and back")
    func roundTrip() throws {
        let original = fullyPopulated()
        let options = JSONEncodingOptions.defaults { $0.typeRegistry = .wellKnownTypes.adding(TestMessages.testMessageTypes) }
        let json = try original.jsonString(options: options)
        let decoded = try TestAllTypes(jsonString: json, options: .defaults { $0.typeRegistry = options.typeRegistry })
        #expect(decoded == original, "\(json)")
    }

    @Test("field names: JSON name written, JSON name and proto name accepted")
    func fieldNames() throws {
        var message = TestAllTypes()
        message.singularInt32 = 5
        message.customJson = "x"
        #expect(try message.jsonString() == #"{"singularInt32":5,"renamedField":"x"}"#)
        let preserved = try message.jsonString(options: .defaults { $0.preserveProtoFieldNames = true })
        #expect(preserved == #"{"singular_int32":5,"custom_json":"x"}"#)
        #expect(try TestAllTypes(jsonString: #"{"singular_int32":5,"custom_json":"x"}"#) == message)
        #expect(try TestAllTypes(jsonString: #"{"singularInt32":5,"renamedField":"x"}"#) == message)
    }

    @Test("64-bit integers are strings; numbers are accepted too")
    func sixtyFourBit() throws {
        var message = TestAllTypes()
        message.singularInt64 = .min
        message.singularUint64 = .max
        #expect(try message.jsonString() == #"{"singularInt64":"-9223372036854775808","singularUint64":"18446744073709551615"}"#)
        let fromNumbers = try TestAllTypes(jsonString: #"{"singularInt64": -12, "singularUint32": "7", "singularInt32": 1e2}"#)
        #expect(fromNumbers.singularInt64 == -12)
        #expect(fromNumbers.singularUint32 == 7)
        #expect(fromNumbers.singularInt32 == 100)
    }

    @Test("enums as names, numbers accepted, unknown numbers kept")
    func enums() throws {
        var message = TestAllTypes()
        message.singularNestedEnum = .bar
        #expect(try message.jsonString() == #"{"singularNestedEnum":"NESTED_ENUM_BAR"}"#)
        #expect(try TestAllTypes(jsonString: #"{"singularNestedEnum":2}"#).singularNestedEnum == .bar)
        #expect(try TestAllTypes(jsonString: #"{"singularNestedEnum":42}"#).singularNestedEnum == .unrecognized(42))
        message.singularNestedEnum = .unrecognized(42)
        #expect(try message.jsonString() == #"{"singularNestedEnum":42}"#)
    }

    @Test("bytes as base64; URL-safe and unpadded accepted")
    func bytes() throws {
        var message = TestAllTypes()
        message.singularBytes = [0xfb, 0xff, 0xbf]
        #expect(try message.jsonString() == #"{"singularBytes":"+/+/"}"#)
        #expect(try TestAllTypes(jsonString: #"{"singularBytes":"-_-_"}"#) == message)
        message.singularBytes = [0x61]
        #expect(try message.jsonString() == #"{"singularBytes":"YQ=="}"#)
        #expect(try TestAllTypes(jsonString: #"{"singularBytes":"YQ"}"#) == message)
    }

    @Test("null means unset; defaults appear only when asked")
    func nullAndDefaults() throws {
        #expect(try TestAllTypes(jsonString: #"{"singularInt32":null,"singularNestedMessage":null,"repeatedInt32":null}"#) == TestAllTypes())
        let withDefaults = try TestEmpty().jsonString(options: .defaults { $0.alwaysPrintFieldsWithNoPresence = true })
        #expect(withDefaults == "{}")
        let all = try TestAllTypes().jsonString(options: .defaults { $0.alwaysPrintFieldsWithNoPresence = true })
        #expect(all.contains(#""singularInt32":0"#))
        #expect(all.contains(#""repeatedString":[]"#))
        #expect(all.contains(#""mapStringInt32":{}"#))
        #expect(!all.contains("singularNestedMessage"))
    }

    @Test("float and double specials")
    func specials() throws {
        var message = TestAllTypes()
        message.singularDouble = .infinity
        message.singularFloat = -.infinity
        #expect(try message.jsonString() == #"{"singularFloat":"-Infinity","singularDouble":"Infinity"}"#)
        let nan = try TestAllTypes(jsonString: #"{"singularDouble":"NaN"}"#)
        #expect(nan.singularDouble.isNaN)
    }

    @Test("well-known types use their special forms")
    func wellKnownForms() throws {
        var message = TestAllTypes()
        message.timestamp = WKT.Timestamp(seconds: 63_072_000 + 36_020, nanos: 21_000_000)
        message.duration = WKT.Duration(seconds: 1, nanos: 340_012)
        message.fieldMask = WKT.FieldMask(paths: ["user.display_name", "photo"])
        message.wrappedInt32 = WKT.Int32Value(0)
        message.empty = WKT.Empty()
        let json = try message.jsonString()
        #expect(json.contains(#""timestamp":"1972-01-01T10:00:20.021Z""#), "\(json)")
        #expect(json.contains(#""duration":"1.000340012s""#), "\(json)")
        #expect(json.contains(#""fieldMask":"user.displayName,photo""#), "\(json)")
        #expect(json.contains(#""wrappedInt32":0"#), "\(json)")
        #expect(json.contains(#""empty":{}"#), "\(json)")
        #expect(try TestAllTypes(jsonString: json) == message)
        // Offsets are normalized to UTC.
        let offset = try TestAllTypes(jsonString: #"{"timestamp":"1972-01-01T12:00:20.021+02:00"}"#)
        #expect(offset.timestamp == message.timestamp)
    }

    @Test("Struct, Value and ListValue are plain JSON")
    func structs() throws {
        let json = #"{"structValue":{"a":[1,"two",true,null,{"b":{}}]},"value":null,"listValue":[]}"#
        let message = try TestAllTypes(jsonString: json)
        guard case .listValue(let list)? = message.structValue?.fields["a"]?.kind else {
            Issue.record("structValue.a is not a list")
            return
        }
        #expect(list.values.count == 5)
        #expect(message.value?.kind == .nullValue(.init()))
        let reparsed = try TestAllTypes(jsonString: try message.jsonString())
        #expect(reparsed == message)
    }

    @Test("Any carries @type and the packed message's fields")
    func anyJSON() throws {
        var inner = TestAllTypes()
        inner.singularString = "packed"
        var message = TestAllTypes()
        message.any = try WKT.AnyMessage(packing: inner)
        let registry = TypeRegistry.wellKnownTypes.adding(TestMessages.testMessageTypes)
        let json = try message.jsonString(options: .defaults { $0.typeRegistry = registry })
        #expect(json == #"{"any":{"@type":"type.googleapis.com/fabrikam.testing.v1.TestAllTypes","singularString":"packed"}}"#)
        #expect(try TestAllTypes(jsonString: json, options: .defaults { $0.typeRegistry = registry }) == message)
        // Without the type registered, writing fails with a clear error.
        #expect(throws: JSONEncodingError.self) { try message.jsonString() }
    }

    @Test("Swift keywords as field names")
    func keywords() throws {
        var message = Fabrikam.Testing.V1.TestSwiftKeywords()
        message.class = "c"
        message.protocol = 2
        message.self_ = true
        message.type = "t"
        let json = try message.jsonString()
        #expect(json == #"{"class":"c","protocol":2,"self":true,"type":"t"}"#)
        #expect(try Fabrikam.Testing.V1.TestSwiftKeywords(jsonString: json) == message)
        #expect(try Fabrikam.Testing.V1.TestSwiftKeywords(serializedBytes: message.serializedBytes()) == message)
    }
}

/// Bad JSON gives an error that names the path of the offending field.
@Suite("Malformed JSON input")
struct MalformedJSONTests {
    @Test("errors name the field path", arguments: [
        (#"{"singularNestedMessage":{"value":"heavy"}}"#, #"singularNestedMessage.value: expected an int32, got "heavy""#),
        (#"{"singularInt32":"x"}"#, #"singularInt32: expected an int32, got "x""#),
        (#"{"singularInt32":3000000000}"#, "singularInt32: 3000000000 is out of range for an int32"),
        (#"{"singularInt32":1.5}"#, "singularInt32: 1.5 is not a valid an int32"),
        (#"{"repeatedInt32":[1,2,"z"]}"#, #"repeatedInt32[2]: expected an int32, got "z""#),
        (#"{"mapStringInt32":{"k":true}}"#, #"mapStringInt32["k"]: expected an int32, got true"#),
        (#"{"singularString":5}"#, "singularString: expected a string, got 5"),
        (#"{"singularBool":"yes"}"#, #"singularBool: expected true or false, got "yes""#),
        (#"{"singularBytes":"***"}"#, #"singularBytes: expected base64, got "***""#),
        (#"{"singularNestedEnum":"PURPLE"}"#, #"singularNestedEnum: "PURPLE" is not a value of fabrikam.testing.v1.TestAllTypes.NestedEnum"#),
        (#"{"nope":1}"#, "nope: unknown field (fabrikam.testing.v1.TestAllTypes has no field named 'nope')"),
        (#"{"timestamp":"yesterday"}"#, #"timestamp: "yesterday" is not an RFC 3339 timestamp between 0001-01-01 and 9999-12-31"#),
        (#"{"duration":"5m"}"#, #"duration: expected a duration string like "1.5s", got "5m""#),
        (#"{"choiceInt32":1,"choiceString":"a"}"#, "choiceString: more than one member of oneof 'choice' is set"),
        (#"{"recursive":{"recursive":{"singularFloat":1e300}}}"#, "recursive.recursive.singularFloat: 1e+300 is out of range for a float"),
        (#"[1]"#, "expected an object for fabrikam.testing.v1.TestAllTypes, got an array"),
        (#"{"singularInt32":1,}"#, "invalid JSON at line 1, column 20: expected a member name after ','"),
        (#"{"singularInt32":01}"#, "singularInt32: invalid JSON at line 1, column 19: numbers cannot have leading zeros"),
        (#"{"singularString":"a\qb"}"#, "singularString: invalid JSON at line 1, column 23: invalid escape '\\q'"),
        (#"{"singularString":"\ud800"}"#, "singularString: invalid JSON at line 1, column 26: unpaired surrogate in \\u escape"),
        ("{\"singularString\":\"\u{01}\"}", "singularString: invalid JSON at line 1, column 20: unescaped control character in a string"),
        (#"{"singularInt32":1} x"#, "invalid JSON at line 1, column 21: unexpected data after the value"),
        (#"{"singular_int32":1,"singularInt32":2}"#, "singularInt32: the field is given more than once"),
        (#"{"singularInt32":1,"singularInt32":2}"#, "singularInt32: the field is given more than once"),
        (#"{"singularInt32":"#, "singularInt32: invalid JSON at line 1, column 18: expected a value, found the end of the input"),
    ])
    func badJSON(input: String, expected: String) throws {
        let error = try #require(throws: JSONDecodingError.self) { try TestAllTypes(jsonString: input) }
        #expect(error.description == expected)
    }

    @Test("unknown fields can be ignored")
    func ignoreUnknown() throws {
        let message = try TestAllTypes(jsonString: #"{"nope":1,"singularInt32":2,"singularNestedEnum":"PURPLE"}"#,
                                       options: .defaults { $0.ignoreUnknownFields = true })
        #expect(message.singularInt32 == 2)
        #expect(message.singularNestedEnum == .unspecified)
    }

    @Test("nesting deeper than the limit is refused")
    func deepNesting() throws {
        let json = String(repeating: #"{"recursive":"#, count: 150) + "{}" + String(repeating: "}", count: 150)
        #expect(throws: JSONDecodingError.self) { try TestAllTypes(jsonString: json) }
    }
}
