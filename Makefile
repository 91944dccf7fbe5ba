# Outpost — build, test, demo and checks. `make help` lists the targets.
SHELL := bash
GO    ?= go
# Every build and test runs on this Go, which the go command fetches from
# the module proxy (about 10 s the first time): the machine's own may lack
# security fixes that the shipped binaries need (net/http, crypto/tls,
# crypto/x509, html/template: govulncheck finds 14 in Go 1.26.8 and none
# in 1.27.3). The code still builds with Go 1.26 (go.mod). Override with
# make GO_TOOLCHAIN=local.
GO_TOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN := $(GO_TOOLCHAIN)
BIN   := bin
ABSBIN := $(CURDIR)/$(BIN)
# The file server is a real MinIO built from the Go module proxy, pinned.
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
STATICCHECK_VERSION := v0.8.2
# govulncheck reads Go's vulnerability database from a pinned snapshot of
# its module (golang.org/x/vulndb), indexed here; raise it to see newer ones.
GOVULNCHECK_VERSION := v1.9.0
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VERSION ?= $(shell sh scripts/version.sh 2>/dev/null || echo dev)
LDFLAGS := -X github.com/outposthq/outpost/coordinator.Version=$(VERSION) \
           -X github.com/outposthq/outpost/coordinator/internal/cli.Version=$(VERSION) \
           -X github.com/outposthq/outpost/agent.Version=$(VERSION) \
           -X github.com/outposthq/outpost/relay.Version=$(VERSION)
CMDS := ./coordinator/cmd/outpost-coordinator ./coordinator/cmd/outpost \
        ./agent/cmd/outpost-agent ./relay/cmd/outpost-relay \
        ./plugins/packages/cmd/outpost-plugin-package \
        ./plugins/registry/cmd/outpost-plugin-registry \
        ./plugins/patch/cmd/outpost-plugin-patch \
        ./loadgen/cmd/outpost-loadgen
PROTOS := $(wildcard pkg/wire/*.proto) plugins/proto/plugin.proto

.PHONY: go-toolchain vulncheck help build minio test test-integ bench demo check proto clean

vulncheck:
	@set -e; src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	  tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; cp -r "$$src" $$tmp/src; chmod -R u+w $$tmp/src; \
	  echo "indexing the vulnerability database $(VULNDB_VERSION)"; (cd $$tmp/src && $(GO) run ./cmd/indexdb -vulns data/osv -out $$tmp/db); \
	  $(GO) run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) -db file://$$tmp/db ./...

go-toolchain:
	@echo $(GO_TOOLCHAIN)

help:
	@echo "make build   - every binary into ./bin"
	@echo "make test    - go test -race over everything, with a real MinIO (installed into ./bin if missing)"
	@echo "make demo    - a whole local fleet: MinIO, coordinator, relay, three agents (DEMO_ONESHOT=1 exits after success)"
	@echo "make bench   - benchmarks, with the relay against nginx side by side (installs Debian's nginx if missing)"
	@echo "make check   - gofmt, go vet, staticcheck, go.mod tidy, import boundaries, stale generated code"
	@echo "make vulncheck - govulncheck against a pinned snapshot of Go's vulnerability database"
	@echo "make proto   - regenerate protobuf code (needs protoc: apt-get install protobuf-compiler)"

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(CMDS)

$(BIN)/minio:
	@echo "installing MinIO $(MINIO_VERSION) into ./bin (a few minutes the first time)"
	GOBIN=$(ABSBIN) GOTOOLCHAIN=local $(GO) install github.com/minio/minio@$(MINIO_VERSION)

minio: $(BIN)/minio

test: $(BIN)/minio
	$(GO) test -race -timeout 25m ./...

test-integ: $(BIN)/minio
	$(GO) test -race -timeout 60m -tags integ ./...

bench: $(BIN)/minio
	bash bench/install-nginx.sh
	$(GO) test -run '^$$' -bench . -benchmem -timeout 150m ./...

demo: $(BIN)/minio build
	bash scripts/demo.sh

# Built by the Go it checks with: one built by an older Go cannot read a
# newer standard library.
STATICCHECK := $(BIN)/staticcheck-$(STATICCHECK_VERSION)-$(GO_TOOLCHAIN)
$(STATICCHECK):
	tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) && mv $$tmp/staticcheck $@ && rmdir $$tmp

$(BIN)/protoc-gen-go:
	GOBIN=$(ABSBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-go-grpc:
	GOBIN=$(ABSBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc
	PATH=$(ABSBIN):$$PATH protoc -I . --go_out=. --go_opt=module=github.com/outposthq/outpost \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/outposthq/outpost $(PROTOS)

check: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(STATICCHECK)
	@echo "gofmt"; out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants to rewrite:"; echo "$$out"; exit 1; fi
	@echo "go vet"; $(GO) vet ./...
	@echo "go vet (windows: the registry plugin's real-registry backend)"; GOOS=windows $(GO) vet ./plugins/registry/...
	@echo "staticcheck"; $(STATICCHECK) ./...
	@echo "go mod tidy"; cp go.mod /tmp/outpost-go.mod.bak; cp go.sum /tmp/outpost-go.sum.bak; \
	  $(GO) mod tidy; if ! git diff --quiet -- go.mod go.sum; then echo "go.mod/go.sum are not tidy (run go mod tidy)"; \
	  cp /tmp/outpost-go.mod.bak go.mod; cp /tmp/outpost-go.sum.bak go.sum; exit 1; fi
	@echo "import boundaries"; $(GO) test -run TestImportBoundaries .
	@echo "generated protobuf code"; if command -v protoc >/dev/null; then \
	  tmp=$$(mktemp -d); PATH=$(ABSBIN):$$PATH protoc -I . --go_out=$$tmp --go_opt=module=github.com/outposthq/outpost \
	    --go-grpc_out=$$tmp --go-grpc_opt=module=github.com/outposthq/outpost $(PROTOS) && \
	  for f in $$(cd $$tmp && find . -name '*.go'); do cmp -s $$tmp/$$f $$f || { echo "$$f is stale: run make proto"; exit 1; }; done; \
	  else echo "protoc not installed: skipping the stale-code check (apt-get install protobuf-compiler)"; fi

clean:
	rm -rf .demo
	find $(BIN) -maxdepth 1 -type f ! -name minio -delete 2>/dev/null || true
