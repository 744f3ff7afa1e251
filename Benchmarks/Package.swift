// swift-tools-version: 6.1
// Benchmarks that need heavy peers live here, apart from the main package, so its build stays lean.
//
//   make bench-protobuf     (tools/bench-protobuf.sh)
//
// ProtobufBenchmarks: ProtobufKit (protobuf-c underneath) against swift-protobuf 1.39 on the same
// messages, and the JSON parsers (jansson against Foundation) on the same text.
import PackageDescription

let package = Package(
    name: "fabrikam-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "fabrikam-drone-delivery", path: ".."),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Generated once by tools/bench-protobuf.sh --regenerate with swift-protobuf's
        // protoc-gen-swift from the same .proto files, and committed.
        .target(
            name: "SwiftProtobufMessages",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]
        ),
        .systemLibrary(name: "CJansson", pkgConfig: "jansson", providers: [.apt(["libjansson-dev"])]),
        .target(
            name: "JanssonParser",
            dependencies: ["CJansson", .product(name: "ProtobufKit", package: "fabrikam-drone-delivery")]
        ),
        .executableTarget(
            name: "ProtobufBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "ProtobufKit", package: "fabrikam-drone-delivery"),
                .product(name: "DroneDeliveryAPI", package: "fabrikam-drone-delivery"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                "SwiftProtobufMessages",
                "JanssonParser",
            ],
            path: "Benchmarks/ProtobufBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
