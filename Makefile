GO      ?= go
BIN     := bin/keygate
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME ?= 60s

.PHONY: all build run test test-deps lint bench fuzz clean kube-bins test-kube

all: lint test build

## build: the keygate binary in bin/
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/keygate

## run: serve the example policy (gRPC :9001, HTTP :9002, admin :9003, management API and key page :9004); the API writes to a copy in .run/
run: build
	@mkdir -p .run; [ -f .run/policy.yaml ] || cp examples/policy.yaml .run/policy.yaml
	$(BIN) serve --policy .run/policy.yaml --api-addr :9004 --log-format console

## test: install what the tests need (hack/test-deps.sh), vet, then every test (unit, end-to-end against the built binary and real nginx, Caddy, kube-apiserver, Redis, chromium and an OpenID provider, fuzz seed corpora) with the race detector
test: test-deps
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

## test-deps: nginx, Caddy, etcd, redis-server, chromium from Debian; kube-apiserver and zitadel's example OpenID provider from their Go modules (cached), when missing
test-deps:
	bash hack/test-deps.sh

## kube-bins: build kube-apiserver and kubectl for test/kube (cached; a cold build takes ~8 min and ~2 GB)
kube-bins:
	bash hack/build-kube.sh

## test-kube: only the real kube-apiserver suite (make test runs it too, within ./...)
test-kube:
	$(GO) test -count=1 -v ./test/kube/

## lint: gofmt and go vet
lint:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## bench: the decision benchmarks (ns/op, allocs/op)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

## bench-load: keygate vs a no-op ext_authz floor under gRPC load (~2.5 min; flags in LOADFLAGS, see docs/performance.md)
.PHONY: bench-load
bench-load:
	$(GO) run ./test/load -rounds 5 -duration 10s -concurrency 50 -connections 10 -keys 10000 $(LOADFLAGS)

## bench-load-http: keygate's ext_authz HTTP port vs a net/http server answering 200, driven by wrk (apt-get install -y wrk; ~2.5 min; flags in LOADFLAGS)
.PHONY: bench-load-http
bench-load-http:
	@command -v wrk >/dev/null || { echo "bench-load-http needs wrk, an HTTP load generator: apt-get install -y wrk (Debian, Ubuntu), brew install wrk (macOS)" >&2; exit 1; }
	$(GO) run ./test/load -mode http -rounds 5 -duration 10s -concurrency 50 -keys 10000 $(LOADFLAGS)

## soak: 10 min of load with a policy reload every second alternating a key's presence (make test runs a 9 s version; see docs/performance.md)
.PHONY: soak
soak:
	$(GO) run ./test/load -soak 10m -keys 5000 -concurrency 20 -connections 4 $(LOADFLAGS)

## fuzz: run each fuzz target for FUZZTIME (default 60s)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/policy/
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizePath$$' -fuzztime $(FUZZTIME) ./internal/authz/
	$(GO) test -run '^$$' -fuzz '^FuzzBearerToken$$' -fuzztime $(FUZZTIME) ./internal/authz/
	$(GO) test -run '^$$' -fuzz '^FuzzCanonicalMethod$$' -fuzztime $(FUZZTIME) ./internal/authz/
	$(GO) test -run '^$$' -fuzz '^FuzzHTTPHeadersGet$$' -fuzztime $(FUZZTIME) ./internal/authz/
	$(GO) test -run '^$$' -fuzz '^FuzzSignedSession$$' -fuzztime $(FUZZTIME) ./internal/authz/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./internal/server/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeCheckRequest$$' -fuzztime $(FUZZTIME) ./internal/server/
	$(GO) test -run '^$$' -fuzz '^FuzzHTTPRequest$$' -fuzztime $(FUZZTIME) ./internal/server/
	$(GO) test -run '^$$' -fuzz '^FuzzMatchIndex$$' -fuzztime $(FUZZTIME) ./internal/policy/
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./internal/apikey/
	$(GO) test -run '^$$' -fuzz '^FuzzRedact$$' -fuzztime $(FUZZTIME) ./internal/apikey/

clean:
	rm -rf bin
