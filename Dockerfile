# jsctl container image: a static binary on a distroless base, running as a
# non-root user, with the data dir on a volume.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# jsctl version prints these: docker build --build-arg VERSION=v1.2.3 \
#   --build-arg COMMIT=$(git rev-parse HEAD) --build-arg BUILD_DATE=$(date -u +%FT%TZ) .
ARG VERSION=devel
ARG COMMIT=unknown
ARG BUILD_DATE=unknown
RUN CGO_ENABLED=0 go build -trimpath -o /out/jsctl \
      -ldflags "-s -w -X github.com/jsctl/jsctl/cmd.Version=${VERSION} -X github.com/jsctl/jsctl/cmd.Commit=${COMMIT} -X github.com/jsctl/jsctl/cmd.BuildDate=${BUILD_DATE}" . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/jsctl /usr/local/bin/jsctl
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
VOLUME /data
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/jsctl", "health", "--addr", "127.0.0.1:50051"]
ENTRYPOINT ["/usr/local/bin/jsctl"]
CMD ["serve", "--data-dir", "/data", "--grpc-listen", "0.0.0.0:50051", "--http-listen", "0.0.0.0:8080"]
