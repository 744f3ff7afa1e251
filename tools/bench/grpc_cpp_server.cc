// The peer for `make bench-rpc`: grpc C++ (Debian's libgrpc++-dev) serving the same TestService
// calls the benchmark drives against our interop server: EmptyCall, UnaryCall and
// StreamingOutputCall, with the interop behaviour (payloads of zeros of the asked size).
// Callback API, one completion thread per core by default, as a production grpc C++ server.
//
//   grpc_cpp_server PORT [CERT KEY]   (binds 127.0.0.1; prints "listening 127.0.0.1:PORT")
//
// With CERT and KEY (PEM files), it serves TLS with them (grpc's SslServerCredentials, no client
// certificate asked): the peer for `make bench-tls`.

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "grpc/testing/test.grpc.pb.h"

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;
using grpc::ServerWriteReactor;
using grpc::Status;
using namespace grpc::testing;

namespace {

class TestServiceImpl final : public TestService::CallbackService {
  ServerUnaryReactor* EmptyCall(CallbackServerContext* context, const Empty*, Empty*) override {
    auto* reactor = context->DefaultReactor();
    reactor->Finish(Status::OK);
    return reactor;
  }

  ServerUnaryReactor* UnaryCall(CallbackServerContext* context, const SimpleRequest* request,
                                SimpleResponse* response) override {
    response->mutable_payload()->set_body(std::string(request->response_size(), '\0'));
    auto* reactor = context->DefaultReactor();
    reactor->Finish(Status::OK);
    return reactor;
  }

  // Writes one response per response_parameters entry, then finishes.
  class OutputWriter final : public ServerWriteReactor<StreamingOutputCallResponse> {
   public:
    explicit OutputWriter(const StreamingOutputCallRequest* request) : request_(request) { Next(); }
    void OnWriteDone(bool ok) override {
      if (!ok) { Finish(Status::CANCELLED); return; }
      Next();
    }
    void OnDone() override { delete this; }

   private:
    void Next() {
      if (index_ >= request_->response_parameters_size()) { Finish(Status::OK); return; }
      response_.mutable_payload()->set_body(std::string(request_->response_parameters(index_++).size(), '\0'));
      StartWrite(&response_);
    }
    const StreamingOutputCallRequest* request_;
    StreamingOutputCallResponse response_;
    int index_ = 0;
  };

  ServerWriteReactor<StreamingOutputCallResponse>* StreamingOutputCall(
      CallbackServerContext*, const StreamingOutputCallRequest* request) override {
    return new OutputWriter(request);
  }
};

std::string ReadFile(const char* path) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 4) {
    std::fprintf(stderr, "usage: grpc_cpp_server PORT [CERT KEY]\n");
    return 2;
  }
  std::string address = std::string("127.0.0.1:") + argv[1];
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (argc == 4) {
    grpc::SslServerCredentialsOptions options;
    options.pem_key_cert_pairs.push_back({ReadFile(argv[3]), ReadFile(argv[2])});
    credentials = grpc::SslServerCredentials(options);
  }
  TestServiceImpl service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, credentials, &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return 1;
  std::printf("listening 127.0.0.1:%d\n", port);
  std::fflush(stdout);
  server->Wait();
  return 0;
}
