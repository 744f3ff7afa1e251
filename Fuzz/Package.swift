// swift-tools-version: 6.0
// libFuzzer targets for the input paths that face untrusted bytes: binary decode, JSON parse, and
// the gateway's HTTP request transcoding.
// Built and run by `make fuzz` (tools/fuzz.sh) with -sanitize=fuzzer,address; kept out of the
// main package so its normal build stays uninstrumented.
import PackageDescription

let package = Package(
    name: "fabrikam-fuzz",
    dependencies: [.package(name: "fabrikam-drone-delivery", path: "..")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(
            name: "FuzzBinaryDecode",
            dependencies: [
                .product(name: "ProtobufKit", package: "fabrikam-drone-delivery"),
                .product(name: "DroneDeliveryAPI", package: "fabrikam-drone-delivery"),
                "FuzzDriver",
            ]
        ),
        .executableTarget(
            name: "FuzzJSONParse",
            dependencies: [
                .product(name: "ProtobufKit", package: "fabrikam-drone-delivery"),
                .product(name: "DroneDeliveryAPI", package: "fabrikam-drone-delivery"),
                "FuzzDriver",
            ]
        ),
        .executableTarget(
            name: "FuzzGatewayRequest",
            dependencies: [
                .product(name: "Gateway", package: "fabrikam-drone-delivery"),
                .product(name: "ProtobufKit", package: "fabrikam-drone-delivery"),
                .product(name: "DroneDeliveryAPI", package: "fabrikam-drone-delivery"),
                .product(name: "GRPCProtos", package: "fabrikam-drone-delivery"),
                "FuzzDriver",
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
