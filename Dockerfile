# Multi-stage build: compile in the Rust image, run in a slim Debian image as a
# non-root user. The index lives on a volume (see compose.yaml), not in the image.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p vectorwise \
 && cp target/release/vectorwise /usr/local/bin/vectorwise

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 vectorwise \
 && useradd --system --uid 10001 --gid vectorwise --no-create-home --shell /usr/sbin/nologin vectorwise
COPY --from=build /usr/local/bin/vectorwise /usr/local/bin/vectorwise
ENV VECTORWISE_INDEX_PATH=/data/index.vwi \
    VECTORWISE_VECTORS_PATH=/data/vectors.npy \
    VECTORWISE_HOST=0.0.0.0 \
    VECTORWISE_PORT=8000 \
    VECTORWISE_LOG_FORMAT=json
# Numeric, so runtimes can check it is non-root (e.g. Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 8000
# Through sh so the check follows VECTORWISE_PORT if it is overridden, and
# speaks HTTPS when VECTORWISE_TLS_CERT is set (without checking the
# certificate: a loopback probe of / sends no key).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["sh", "-c", "if [ -n \"${VECTORWISE_TLS_CERT}\" ]; then exec vectorwise health --insecure --url \"https://127.0.0.1:${VECTORWISE_PORT}\"; else exec vectorwise health --url \"http://127.0.0.1:${VECTORWISE_PORT}\"; fi"]
ENTRYPOINT ["vectorwise"]
CMD ["serve"]
