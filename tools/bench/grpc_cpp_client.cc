// The grpc C++ client of `make bench-tls` (Debian's libgrpc++-dev): the same load as our
// bench-client (tools/bench-client), for the client side of the TLS benchmark. CALLS UnaryCalls
// (a 16-byte payload, a 16-byte response asked) over CONNECTIONS channels (each with its own
// subchannel pool, so its own connection) with CONCURRENCY calls in flight on each (callback
// API), then HANDSHAKES new channels one after another with one call each. CPU is this
// process's (getrusage, user + system), measured around the calls only (after a warm-up).
//
//   grpc_cpp_client PORT CONNECTIONS CONCURRENCY CALLS WARMUP HANDSHAKES [CA [SERVER_NAME]]
//
// With CA (a PEM file) the channels are TLS, the server's certificate checked against CA and
// against SERVER_NAME (default: localhost; grpc's ssl_target_name_override). Prints:
//   calls CALLS_PER_SECOND CPU_US_PER_CALL
//   connect CONNECTIONS_PER_SECOND CPU_US_PER_CONNECTION      (HANDSHAKES > 0)

#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "grpc/testing/test.grpc.pb.h"

using namespace grpc::testing;

namespace {

double CpuMicroseconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 + usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
}

std::string ReadFile(const char* path) {
  std::ifstream file(path);
  std::stringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

struct Target {
  std::string address;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string server_name;  // empty: cleartext
  int next_id = 0;

  // A channel with a connection of its own (a local subchannel pool, and arguments no other
  // channel has, so that grpc shares nothing between them).
  std::unique_ptr<TestService::Stub> NewStub() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("fabrikam.bench.channel", next_id++);
    if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
    return TestService::NewStub(grpc::CreateCustomChannel(address, credentials, args));
  }
};

// Runs `total` calls over the stubs, `concurrency` in flight on each; exits on a failed call.
class Driver {
 public:
  Driver(std::vector<std::unique_ptr<TestService::Stub>>& stubs, int concurrency, long total, const SimpleRequest& request)
      : stubs_(stubs), concurrency_(concurrency), remaining_(total), request_(request) {}

  void Run() {
    active_ = static_cast<int>(stubs_.size()) * concurrency_;
    for (auto& stub : stubs_)
      for (int i = 0; i < concurrency_; i++) Next(stub.get());
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return active_ == 0; });
  }

 private:
  struct Call {
    grpc::ClientContext context;
    SimpleResponse response;
  };

  void Next(TestService::Stub* stub) {
    if (remaining_.fetch_sub(1) <= 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0) done_.notify_one();
      return;
    }
    auto* call = new Call;
    stub->async()->UnaryCall(&call->context, &request_, &call->response, [this, stub, call](grpc::Status status) {
      if (!status.ok() || call->response.payload().body().size() != 16) {
        std::fprintf(stderr, "grpc_cpp_client: a call failed: %s\n", status.error_message().c_str());
        std::exit(1);
      }
      delete call;
      Next(stub);
    });
  }

  std::vector<std::unique_ptr<TestService::Stub>>& stubs_;
  const int concurrency_;
  std::atomic<long> remaining_;
  const SimpleRequest& request_;
  std::mutex mutex_;
  std::condition_variable done_;
  int active_ = 0;
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7 || argc > 9) {
    std::fprintf(stderr, "usage: grpc_cpp_client PORT CONNECTIONS CONCURRENCY CALLS WARMUP HANDSHAKES [CA [SERVER_NAME]]\n");
    return 2;
  }
  const int connections = std::max(1, std::atoi(argv[2]));
  const int concurrency = std::max(1, std::atoi(argv[3]));
  const long calls = std::atol(argv[4]);
  const long warmup = std::atol(argv[5]);
  const long handshakes = std::atol(argv[6]);
  Target target;
  target.address = std::string("ipv4:127.0.0.1:") + argv[1];
  if (argc >= 8) {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadFile(argv[7]);
    target.credentials = grpc::SslCredentials(options);
    target.server_name = argc == 9 ? argv[8] : "localhost";
  } else {
    target.credentials = grpc::InsecureChannelCredentials();
  }

  SimpleRequest request;
  request.set_response_size(16);
  request.mutable_payload()->set_body("0123456789abcdef");

  std::vector<std::unique_ptr<TestService::Stub>> stubs;
  for (int i = 0; i < connections; i++) stubs.push_back(target.NewStub());
  Driver(stubs, concurrency, std::max<long>(warmup, connections * concurrency), request).Run();

  double cpu_before = CpuMicroseconds();
  auto start = std::chrono::steady_clock::now();
  Driver(stubs, concurrency, calls, request).Run();
  double elapsed = SecondsSince(start);
  double cpu = CpuMicroseconds() - cpu_before;
  std::printf("calls %.0f %.1f\n", calls / elapsed, cpu / std::max<long>(calls, 1));
  stubs.clear();

  if (handshakes > 0) {
    cpu_before = CpuMicroseconds();
    start = std::chrono::steady_clock::now();
    for (long i = 0; i < handshakes; i++) {
      auto stub = target.NewStub();
      grpc::ClientContext context;
      SimpleResponse response;
      grpc::Status status = stub->UnaryCall(&context, request, &response);
      if (!status.ok()) {
        std::fprintf(stderr, "grpc_cpp_client: a call on a new connection failed: %s\n", status.error_message().c_str());
        return 1;
      }
    }
    elapsed = SecondsSince(start);
    cpu = CpuMicroseconds() - cpu_before;
    std::printf("connect %.0f %.1f\n", handshakes / elapsed, cpu / handshakes);
  }
  std::fflush(stdout);
  return 0;
}
