# Thin wrapper over CMake and ctest. `make demo` and `make test` are the README's two set-up commands.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build demo test bench asan fuzz clean compilers package package-test portable cross-test realboot
all: build

deps:
	@./tools/install-deps.sh

# Warnings are errors here and in CI (ND_WERROR is off by default for people building a release themselves).
build: deps
	@cmake -S . -B $(BUILD) -DND_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@./tools/demo.sh $(BUILD)

# The real-boot tests (tests/realboot, docs/realboot.md) need a QEMU with the nitro-enclave machine, built once from
# Debian's source and cached outside the tree (~/.cache/nitrodiag/qemu-*), and the enclave kernel (cached beside it).
# CI prepares both, so the realboot.* tests run there; elsewhere they skip until `make realboot` has run once.
realboot:
	@./tools/build-qemu.sh >/dev/null
	@./tools/fetch-enclave-kernel.sh >/dev/null

ifeq ($(CI),true)
TEST_PREP = realboot
endif

test: build $(TEST_PREP)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600
ifeq ($(CI),true)
	@$(MAKE) --no-print-directory compilers
endif

# The other compiler and the packagers' build type, warnings as errors, with their C unit tests: CI runs this after
# `make test` (CI=true), so neither a clang-only nor an optimiser-only warning can land.
compilers: deps
	@for cfg in "clang Debug build-clang" "gcc Release build-release"; do set -- $$cfg; \
	  echo "== $$1 $$2 ($$3)"; \
	  CC=$$1 cmake -S . -B $$3 -DCMAKE_BUILD_TYPE=$$2 -DND_WERROR=ON >/dev/null && \
	  { cmake --build $$3 -j $(JOBS) >$$3/build.log 2>&1 || { tail -n 40 $$3/build.log; exit 1; }; } && \
	  (cd $$3 && ctest -R '^unit[.]' -j $(JOBS) --timeout 300 | tail -n 3) || exit 1; done

bench: build
	@./tools/install-deps.sh --bench
	@./bench/run.sh $(BUILD)

# The whole build and test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	@$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DND_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# Every libFuzzer target for FUZZ_SECONDS each (default 60), built with clang into $(BUILD)/fuzz; results are appended
# to docs/fuzzing.md. `make test` runs each for a few seconds (the fuzz.* tests).
FUZZ_SECONDS ?= 60
fuzz: deps
	@./fuzz/run.sh fuzz $(BUILD)/fuzz $(FUZZ_SECONDS)

# Packages (docs/packaging.md): the .deb, the portable .rpm and tarball into dist/.
package: deps
	@./packaging/make-packages.sh dist

# The expensive package checks, not part of `make test`: .deb/.rpm metadata, the .deb in a fresh Debian root (made
# once with mmdebstrap from Debian's registry; the test itself runs without network), the portable tree in an empty
# root. Results go to docs/packaging.md by hand.
package-test: package
	@./tools/install-deps.sh --package
	@./packaging/check-packages.sh dist
	@./packaging/test-deb.sh dist/nitrodiag_*_$$(dpkg --print-architecture).deb build-pkgtest
	@./packaging/test-portable.sh dist/nitrodiag-*-linux-$$(uname -m).tar.gz
	@./packaging/test-rpm.sh dist/nitrodiag-*.$$(uname -m).rpm

# aarch64 (Graviton): cross build, unit tests and diag10 under qemu-user, the portable aarch64 tree.
cross-test:
	@./packaging/cross-test.sh

clean:
	rm -rf $(BUILD) build-asan build-clang build-release build-pkg build-portable build-arm64 dist
