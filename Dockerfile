# keygate container image: a static binary on distroless, running as nonroot.
#
#   docker build -t keygate:dev --build-arg VERSION=$(git describe --tags --always) .
#
# Untested here: this project's machines cannot pull base images or run a
# container engine, so no test builds this file. k8s/deployment.yaml expects
# what it makes: the binary as the entrypoint, uid 65532, nothing written to
# the root filesystem.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/keygate ./cmd/keygate

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/keygate /keygate
USER nonroot:nonroot
EXPOSE 9001 9002 9003
ENTRYPOINT ["/keygate"]
CMD ["serve", "--policy", "/etc/keygate/policy.yaml"]
