# Fabrikam Drone Delivery. `make test` and `make run` are the two set-up commands (see README.md).
SHELL := /bin/bash
SWIFT ?= swift
FUZZ_SECONDS ?= 30

PREFIX ?= /usr/local

.PHONY: all deps build install bench-dronectl proto check-generated test unit-tests fuzz bench bench-protobuf bench-rpc bench-tls bench-observability certs bench-ingestion bench-scaled bench-gateway bench-load-levelling run clean interop interop-server \
	images compose-up compose-down validate-deploy container-test measure-containers contract-test contract-baseline contract-record \
	run-scaled run-scaled-down scaled-test chaos-test

all: build

## deps: install system packages (apt) and the Python virtualenv the cross-checks use
deps:
	@bash tools/install-deps.sh

## build: compile everything (debug)
build: deps
	$(SWIFT) build

## install: dronectl (release build) into $(PREFIX)/bin, with its bash, zsh and fish completions
install: deps
	$(SWIFT) build -c release --static-swift-stdlib --product dronectl
	install -d "$(PREFIX)/bin" "$(PREFIX)/share/bash-completion/completions" "$(PREFIX)/share/zsh/site-functions" "$(PREFIX)/share/fish/vendor_completions.d"
	install -m 755 "$$($(SWIFT) build -c release --static-swift-stdlib --show-bin-path)/dronectl" "$(PREFIX)/bin/dronectl"
	"$(PREFIX)/bin/dronectl" completion bash > "$(PREFIX)/share/bash-completion/completions/dronectl"
	"$(PREFIX)/bin/dronectl" completion zsh > "$(PREFIX)/share/zsh/site-functions/_dronectl"
	"$(PREFIX)/bin/dronectl" completion fish > "$(PREFIX)/share/fish/vendor_completions.d/dronectl.fish"
	@echo "installed $(PREFIX)/bin/dronectl"

## proto: regenerate C (protoc-c) and Swift (protoc-gen-swiftpbc) from proto/
proto: deps
	bash tools/generate-protos.sh

## check-generated: fail if regenerating from proto/ changes committed files
check-generated: proto
	@git add -N Sources Tests >/dev/null 2>&1 || true
	@if ! git diff --quiet -- Sources Tests; then \
	  echo "generated code is out of date with proto/ (run 'make proto' and commit):"; \
	  git diff --stat -- Sources Tests; exit 1; fi
	@echo "generated code matches proto/"

## test: deps, build, and every test (unit, cross-implementation, snapshot, contract); the store tests also against a throwaway PostgreSQL (tools/with-postgres.sh)
# At most TEST_WIDTH tests run at once (swift-testing's parallelization width): every test at
# once on two cores held healthy answers back for seconds (CI failed timing bounds that way);
# 12 keeps the run as short as unbounded, since the serialized end-to-end suite is its long pole.
TEST_WIDTH ?= 12
test: deps
	$(SWIFT) build --build-tests
	FABRIKAM_REQUIRE_ENGINES=1 SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(TEST_WIDTH) bash tools/with-postgres.sh bash tools/with-nats.sh $(SWIFT) test --skip-build 2>&1 \
	  | tee .build/test-output.log; bash tools/failed-tests.sh .build/test-output.log "$${PIPESTATUS[0]}"

## contract-test: the .proto contracts: buf lint, buf breaking (WIRE_JSON) against the released baseline, the field-rule corpus, the deliberate faults each must catch, provider verification (dronectl contract verify) of every service of the running system and the provider-side faults it must catch, and schemathesis (every check; examples, coverage and fuzzing, about a minute) against the running gateway's OpenAPI document; a summary, JUnit XML in .build/contract-test/junit.xml (CONTRACT_TEST_REPORT), non-zero exit on any failure
contract-test: deps
	bash tools/contract-test.sh

## contract-baseline: on a release, make the current contracts the baseline that buf breaking compares against (commit proto/contract/baseline.binpb)
contract-baseline: deps
	bash tools/contract-test.sh --release

## contract-record: run the consumers' tests with every call they make recorded, and rebuild contracts/consumers/ from it (commit the files; contract-test replays them)
contract-record: deps
	bash tools/contract-record.sh

## interop: our RPC runtime against grpcio (reference gRPC), client and server, both ways
interop: deps
	bash tools/interop.sh

## interop-server: the interop TestService on 127.0.0.1:$(PORT), in the foreground until Ctrl-C
PORT ?= 50051
interop-server: deps
	$(SWIFT) build --product interop-server
	"$$($(SWIFT) build --show-bin-path)/interop-server" --port $(PORT)

## fuzz: libFuzzer targets for binary decode and JSON parse, $(FUZZ_SECONDS)s each
fuzz: deps
	bash tools/fuzz.sh $(FUZZ_SECONDS)

## bench-protobuf: encode/decode/JSON against swift-protobuf (separate package, Benchmarks/)
bench-protobuf: deps
	bash tools/bench-protobuf.sh

## bench-rpc: our RPC runtime against grpc C++ with h2load (tools/bench-rpc.sh)
bench-rpc: deps
	bash tools/bench-rpc.sh

## bench-tls: server and client CPU per unary call over TLS against cleartext and against grpc C++, and per TLS handshake (tools/bench-tls.sh)
bench-tls: deps
	bash tools/bench-tls.sh

## certs: a local CA and server/client certificates for TLS and mTLS in certs/ (tools/make-certs.sh)
certs:
	bash tools/make-certs.sh certs

## bench-observability: server CPU per unary call with metrics and traces on against off (tools/bench-observability.sh)
bench-observability: deps
	bash tools/bench-observability.sh

## bench-ingestion: durable delivery requests per second into Ingestion, whole system running
bench-ingestion: deps
	bash tools/bench-ingestion.sh

## bench-scaled: intake and end-to-end completion on the scaled system (1 and 2 replicas, PostgreSQL, JetStream) against the embedded default, in one run (root)
bench-scaled: deps
	bash tools/bench-scaled.sh

## bench-gateway: a JSON call through the gateway against the same RPC made directly and through nginx
bench-gateway: deps
	bash tools/bench-gateway.sh

## bench-dronectl: one unary call's wall time and peak memory, dronectl against buf curl; a 100,000-message stream's memory
bench-dronectl: deps
	bash tools/bench-dronectl.sh

## bench-load-levelling: twice the fleet's capacity for 60 s, the drone line against no line (baseline), in one run
bench-load-levelling: deps
	bash tools/bench-load-levelling.sh

bench: bench-protobuf bench-rpc bench-ingestion bench-gateway bench-dronectl bench-load-levelling

## run: start the whole system locally (every service in its own process; Ctrl-C stops them)
run: build
	@bash tools/run.sh --no-build

## run-scaled: PostgreSQL, NATS JetStream and two replicas of every service and of the gateway, each host a network namespace (root; tools/run-scaled.sh, Ctrl-C stops and removes everything)
run-scaled: build
	@bash tools/run-scaled.sh --no-build

## run-scaled-down: stop a run-scaled system and remove its namespaces, /etc/netns entries and state (idempotent)
run-scaled-down:
	@bash tools/run-scaled.sh --down

## scaled-test: start the scaled system, the end-to-end delivery through both gateways from the load host, tear down (tools/scaled-test.sh)
scaled-test: build
	bash tools/scaled-test.sh

## chaos-test: scaled-test, then SIGKILL one replica of each service in turn and restart PostgreSQL and NATS under delivery load; checks every delivery ends, drones and histories (tools/scaled/chaos.py)
chaos-test: build
	bash tools/scaled-test.sh --chaos

## images: one container image per service, fabrikam/<name>:dev (tools/container-images.sh)
images:
	bash tools/container-images.sh

## compose-up: the whole system in containers (compose.yaml), gateway on 127.0.0.1:8080
compose-up: images
	podman-compose -p fabrikam -f compose.yaml up -d
	@echo "up: the README's first delivery works against 127.0.0.1:8080; make compose-down stops it"

## compose-down: stop the containers compose-up started (the engines' volumes, fabrikam_postgres and fabrikam_nats, are kept)
compose-down:
	podman-compose -p fabrikam -f compose.yaml down
	-podman network rm fabrikam_backend fabrikam_engines >/dev/null 2>&1

## validate-deploy: Dockerfile, compose.yaml and the Kubernetes overlays checked offline
validate-deploy:
	bash tools/validate-deploy.sh

## container-test: images, compose up + a delivery, podman kube play of the dev overlay + a delivery
container-test:
	bash tools/container-test.sh

## measure-containers: image sizes, start times, up to first delivery, idle memory, rolling restart
measure-containers:
	bash tools/measure-containers.sh

clean:
	rm -rf .build Benchmarks/.build Fuzz/.build
