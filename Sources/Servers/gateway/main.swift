// gateway: the public JSON/HTTP API on 127.0.0.1:8080 (FABRIKAM_PORT_BASE + 9 when that is set),
// transcoded to the services' RPC.
//   --config FILE (JSON, see config/gateway.json)  --port N  --listen-host H (or --host H)
//   --drain-ms MS (on SIGTERM: /healthz answers 503 this long while requests are still served,
//   then the listener closes)
//   --accounts/--package/--dronescheduler/--delivery/--deliveryhistory/--ingestion HOST:PORT
import Foundation
import Gateway
import RPC
import RPCServices
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["config", "port", "host", "drain-ms", "accounts", "package", "dronescheduler", "delivery",
                                                  "deliveryhistory", "ingestion"])
    var settings = GatewayConfiguration()
    let file = configuration.string("config", default: "")
    if !file.isEmpty { settings = try GatewayConfiguration.load(path: file) }
    // Moved ports (FABRIKAM_PORT_BASE) move the gateway too, whatever the file says; --port wins.
    if ServicePorts.configuredBase() != nil { settings.port = DefaultPort.gateway }
    settings.port = try configuration.int("port", default: settings.port)
    // --listen-host as for every service; --host is the gateway's older name for it.
    settings.host = configuration.string("listen-host", default: configuration.string("host", default: settings.host))
    for name in ["accounts", "package", "dronescheduler", "delivery", "deliveryhistory", "ingestion"] {
        settings.upstreams[name] = configuration.string(name, default: settings.upstreams[name] ?? "")
    }
    let host = ServiceHost(name: "gateway", port: settings.port)
    let drain = Duration.milliseconds(try configuration.int("drain-ms", default: ServiceHost.defaultDrainMilliseconds))
    let gateway = try Gateway(configuration: settings, logger: host.logger)
    // FABRIKAM_TLS_CERT/KEY: HTTPS (HTTP/2 and HTTP/1.1 by ALPN); checked by runService.
    let server = try GatewayHTTPServer(gateway: gateway, tls: TLSEnvironment.current?.server)
    let port = try await bindOrExplain(host: settings.host, port: settings.port, service: .gateway) { try await server.start(host: settings.host, port: settings.port) }
    await host.startMetrics(forPort: port, host: settings.host)
    print("gateway listening on \(settings.host):\(port) (\(gateway.routes.routes.count) routes\(server.tls == nil ? "" : ", TLS"))")
    fflush(nil)
    await waitForTerminationSignal()
    host.logger.info("draining", metadata: ["seconds": "\(drain)"])
    gateway.beginDraining()
    try? await Task.sleep(for: drain)
    await server.shutdown()
    await gateway.close()
    await Tracing.recorder?.shutdown()  // the last spans go out
    await host.metrics.stop()
}
