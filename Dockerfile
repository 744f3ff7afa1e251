# syntax=docker/dockerfile:1
# One image per service, all from this file (docs/deployment.md):
#
#   docker build --build-arg SERVICE=accounts-service -t fabrikam/accounts-service .
#
# SERVICE is one of accounts-service package-service dronescheduler-service delivery-service
# deliveryhistory-service ingestion-service workflow-service supervisor-service drone-simulator
# gateway. The build stage compiles every executable once (release, Swift standard library and
# Foundation linked statically), so ten builds reuse one cached compile. `tools/container-images.sh`
# (`make images`) builds all ten.
#
# Without a registry (this project's CI): the Swift image cannot be pulled, so the binaries are
# built on the host and copied in from .build/container-bin with --build-arg BINARIES=prebuilt;
# the runtime stage is the same either way.

ARG SWIFT_IMAGE=docker.io/library/swift:6.3-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
# "source": compile in the Swift image; "prebuilt": copy from .build/container-bin.
ARG BINARIES=source

# --- build: every executable, release, statically linked Swift runtime --------------------------
# checkov:skip=CKV_DOCKER_7: the tag is in SWIFT_IMAGE's default (6.3-bookworm); checkov does not expand build arguments
FROM ${SWIFT_IMAGE} AS binaries-source
# The C libraries the package links (headers and pkg-config files); Debian's, as on the host.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libnghttp2-dev libprotobuf-c-dev zlib1g-dev \
      libsqlite3-dev libjemalloc-dev libpq-dev libnats-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# What the package needs, and nothing of a local build (.dockerignore keeps .build out as well).
COPY Package.swift ./
COPY Sources Sources
COPY Tests Tests
COPY tools tools
RUN --mount=type=cache,target=/src/.build \
    swift build -c release --static-swift-stdlib \
 && mkdir -p /out \
 && for product in accounts-service package-service dronescheduler-service delivery-service \
        deliveryhistory-service ingestion-service workflow-service supervisor-service \
        drone-simulator gateway health-probe; do \
      strip -o "/out/$product" ".build/release/$product"; \
    done

# --- the same binaries, built on the host (tools/container-images.sh --prebuilt) ----------------
FROM scratch AS binaries-prebuilt
COPY .build/container-bin/ /out/

# hadolint ignore=DL3006
FROM binaries-${BINARIES} AS binaries

# --- runtime: Debian slim, the shared C libraries, one non-root user ----------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# Versions are not pinned: bookworm's security updates replace them, and an image rebuilt later
# should take the fixed libraries, not fail on a version the archive no longer has.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libnghttp2-14 libprotobuf-c1 libsqlite3-0 zlib1g \
      libjemalloc2 libpq5 libnats3.4 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
 && useradd --system --no-log-init --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin fabrikam \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/fabrikam
COPY config/gateway.json /etc/fabrikam/gateway.json

FROM runtime
ARG SERVICE
# The RPC port (the gateway's HTTP port) inside the container; the health check reads it too.
ARG PORT
# Empty: the health check asks grpc.health.v1; the gateway's image sets /healthz (HTTP).
ARG PROBE_HTTP_PATH=""
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="fabrikam-${SERVICE}" \
      org.opencontainers.image.description="Fabrikam Drone Delivery: ${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="https://example.invalid/fabrikam-drone-delivery" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="Fabrikam" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
COPY --from=binaries /out/${SERVICE} /out/health-probe /usr/local/bin/
# Listen on every interface of the container; keep data where the volume is mounted.
# FABRIKAM_CONFIG is read by the gateway only (the other services know no --config flag).
ENV FABRIKAM_SERVICE=${SERVICE} \
    FABRIKAM_PORT=${PORT} \
    FABRIKAM_LISTEN_HOST=0.0.0.0 \
    FABRIKAM_DATA_DIR=/var/lib/fabrikam \
    FABRIKAM_CONFIG=/etc/fabrikam/gateway.json \
    FABRIKAM_PROBE_HTTP_PATH=${PROBE_HTTP_PATH}
# A fixed name for the entry point, whatever the service (exec form, no shell at run time).
RUN test -n "${SERVICE}" -a -x "/usr/local/bin/${SERVICE}" -a -n "${PORT}" \
      || { echo "build with --build-arg SERVICE=<executable> --build-arg PORT=<its port> (docs/deployment.md)"; exit 1; } \
 && ln -s "${SERVICE}" /usr/local/bin/fabrikam-service
WORKDIR /var/lib/fabrikam
USER 10001:10001
EXPOSE ${PORT}
# grpc.health.v1 on FABRIKAM_PORT, or GET /healthz for the gateway (FABRIKAM_PROBE_HTTP_PATH).
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["health-probe"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/fabrikam-service"]
