#!/usr/bin/env python3
"""grpcio over TLS, the reference peer for our TLS server and client (issue 17).

  grpcio_tls.py client --port N --ca CA.pem [--cert C.pem --key K.pem] [--server-name NAME]
      Calls grpc.testing.TestService/EmptyCall on 127.0.0.1:N over TLS with grpcio's secure
      channel; prints `ok` or `error CODE: details` and exits 0 or 1.
  grpcio_tls.py server --cert C.pem --key K.pem [--client-ca CA.pem]
      Serves grpc.testing.TestService/EmptyCall over TLS on 127.0.0.1 (a free port), requiring a
      client certificate of CA.pem with --client-ca; prints `listening 127.0.0.1:PORT` and serves
      until killed (--port-file FILE: the port is written there too).

Messages travel as raw bytes (grpc.testing.Empty is zero bytes), so no generated stubs are needed.
"""

import argparse
import signal
import sys
import threading

import grpc

SERVICE = "grpc.testing.TestService"
EMPTY_CALL = f"/{SERVICE}/EmptyCall"


def read(path):
    with open(path, "rb") as handle:
        return handle.read()


def client(args):
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key) if args.key else None,
        certificate_chain=read(args.cert) if args.cert else None)
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    with grpc.secure_channel(f"127.0.0.1:{args.port}", credentials, options=options) as channel:
        call = channel.unary_unary(EMPTY_CALL, request_serializer=None, response_deserializer=None)
        try:
            answer = call(b"", timeout=10)
        except grpc.RpcError as error:
            print(f"error {error.code().name}: {error.details()}", flush=True)
            return 1
    print("ok" if answer == b"" else f"unexpected answer {answer!r}", flush=True)
    return 0 if answer == b"" else 1


def server(args):
    def empty_call(request, context):
        return b""

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "EmptyCall": grpc.unary_unary_rpc_method_handler(empty_call, request_deserializer=None, response_serializer=None),
    })
    from concurrent import futures
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    grpc_server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [(read(args.key), read(args.cert))],
        root_certificates=read(args.client_ca) if args.client_ca else None,
        require_client_auth=bool(args.client_ca))
    port = grpc_server.add_secure_port("127.0.0.1:0", credentials)
    grpc_server.start()
    print(f"listening 127.0.0.1:{port}", flush=True)
    if args.port_file:  # how the Swift tests' PythonServer learns the port
        with open(args.port_file + ".tmp", "w") as handle:
            handle.write(str(port))
        import os
        os.replace(args.port_file + ".tmp", args.port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.2):  # a bare wait() would not let the signal handlers run
        pass
    grpc_server.stop(0)
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    roles = parser.add_subparsers(dest="role", required=True)
    as_client = roles.add_parser("client")
    as_client.add_argument("--port", type=int, required=True)
    as_client.add_argument("--ca", required=True)
    as_client.add_argument("--cert")
    as_client.add_argument("--key")
    as_client.add_argument("--server-name")
    as_server = roles.add_parser("server")
    as_server.add_argument("--cert", required=True)
    as_server.add_argument("--key", required=True)
    as_server.add_argument("--client-ca")
    as_server.add_argument("--port-file", help="also write the port to this file")
    args = parser.parse_args()
    sys.exit(client(args) if args.role == "client" else server(args))


if __name__ == "__main__":
    main()
