# Thin wrapper over CMake and ctest. `make demo` and `make test` are the README's two set-up commands.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build demo test bench asan fuzz clean
all: build

deps:
	@./tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

demo: build
	@./tools/demo.sh $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

bench: build
	@./bench/run.sh $(BUILD)

# The whole build and test suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	@$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DND_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# Every libFuzzer target for FUZZ_SECONDS each (default 60), built with clang into $(BUILD)/fuzz; results are appended
# to docs/fuzzing.md. `make test` runs each for a few seconds (the fuzz.* tests).
FUZZ_SECONDS ?= 60
fuzz: deps
	@./fuzz/run.sh fuzz $(BUILD)/fuzz $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) build-asan
