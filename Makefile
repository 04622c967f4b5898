# Convenience targets around CMake. `make run` and `make test` are the README's two commands.
BUILD ?= build
JOBS ?= $(shell nproc)
PROMPT ?= Once upon a time

.PHONY: all deps build run test test-all asan clean

all: build

deps:
	@sh tools/install-deps.sh

# A new build folder is configured for Ninja where it is installed (tools/install-deps.sh installs it):
# the same build in ~8% fewer CPU-seconds than with Makefiles (session 12, docs/reliability.md "CI").
# CMake reads CMAKE_GENERATOR only when it creates a folder, so an existing one keeps its generator;
# CMAKE_GENERATOR set by the caller (environment or command line) wins.
ifeq ($(origin CMAKE_GENERATOR),undefined)
ifneq ($(shell command -v ninja 2>/dev/null),)
export CMAKE_GENERATOR := Ninja
endif
endif

# Both builds keep their shaders' SPIR-V in one folder (LOOM_SPV_CACHE, backends/vulkan/vulkan.cmake):
# the second one to build compiles none of them again.
SPV_CACHE := $(CURDIR)/build-spv

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DLOOM_SPV_CACHE=$(SPV_CACHE)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# The main job: generate a story with the bundled model (weights/stories260K.gguf) on the CPU.
run: build
	./$(BUILD)/loom run -p "$(PROMPT)" -n 200

# The README's test command: the suite less the 37 tests labelled ci_covered, whose every check
# another test of the suite makes on the same code (tests/CMakeLists.txt has the map). `make test-all`
# (or TEST_LE=) runs them too; TEST_LE=LABEL leaves out another label (a ctest regex: after a
# `make asan`, TEST_LE='ci_covered|asan_covered' leaves out too what it has just run in full).
TEST_LE ?= ci_covered
test: build
	cd $(BUILD) && ctest --no-tests=error --output-on-failure -j $(JOBS) $(if $(TEST_LE),-LE '$(TEST_LE)')

test-all: build
	cd $(BUILD) && ctest --no-tests=error --output-on-failure -j $(JOBS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer, less the Vulkan checks that
# run no host code the others do not (label sanitizer_redundant, tests/CMakeLists.txt).
asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=ON -DLOOM_VULKAN=ON -DLOOM_SPV_CACHE=$(SPV_CACHE)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ctest --no-tests=error --output-on-failure -j $(JOBS) -LE sanitizer_redundant

clean:
	rm -rf $(BUILD) build-asan build-spv

# ---- reliability (docs/reliability.md) ---------------------------------------------------------
FUZZ_SECONDS ?= 60
.PHONY: fuzz fuzz-smoke tsan lsan

# Each libFuzzer target (fuzz/README.md) for FUZZ_SECONDS; needs clang with libFuzzer.
fuzz: deps
	@$(MAKE) -s -C fuzz check-clang || { echo "make fuzz: clang with libFuzzer does not work here"; exit 1; }
	$(MAKE) -C fuzz -j $(JOBS) build
	$(MAKE) -C fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS)

# Each target for a few seconds with a fixed seed, JOBS targets at a time (.ci/run, when clang works),
# built into build-rel-fuzz-smoke with the AVX2 kernel files at -O0 (fuzz/Makefile's AVX2_OPT says why).
FUZZ_SMOKE := OUT=$(CURDIR)/build-rel-fuzz-smoke AVX2_OPT=-O0
fuzz-smoke: deps
	@$(MAKE) -s -C fuzz check-clang || { echo "make fuzz-smoke: clang with libFuzzer does not work here"; exit 1; }
	$(MAKE) -C fuzz -j $(JOBS) build $(FUZZ_SMOKE)
	$(MAKE) -C fuzz -j $(JOBS) smoke $(FUZZ_SMOKE)

# ThreadSanitizer build of the CPU suite (no Vulkan: TSan does not see into the driver's threads).
tsan: deps
	cmake -S . -B build-rel-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_VULKAN=OFF \
	  -DCMAKE_C_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread
	cmake --build build-rel-tsan -j $(JOBS)
	cd build-rel-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --no-tests=error --output-on-failure -j $(JOBS)

# LeakSanitizer over the commands users run (and their failures) on the fixtures, CPU and Vulkan.
lsan: deps
	cmake -S . -B build-rel-lsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_FLAGS="-fsanitize=leak -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=leak
	cmake --build build-rel-lsan -j $(JOBS) --target loom-cli
	sh tests/scripts/rel_lsan.sh build-rel-lsan/loom tests/fixtures
