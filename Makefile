# nativellm build. `make` builds the libraries and the CLI; `make test` runs every test.
# Variants: `make asan` (ASan+UBSan build, full test run), `make CC=clang`, `make CUDA=1`.

ABI      := 1
VERSION  := 0.1.0
PREFIX   ?= /usr/local
BUILD    ?= build
CC       ?= cc
ARCH     := $(shell $(CC) -dumpmachine | cut -d- -f1)

# Warnings are errors in CI (CI=true, set by .ci/run) and with WERROR=1; a user's build with a
# newer compiler that warns about something new still builds.
WERROR   ?= $(if $(filter true,$(CI)),1,0)
WERROR_FLAG := $(if $(filter 1,$(WERROR)),-Werror)
WARN     := -Wall -Wextra $(WERROR_FLAG) -Wshadow -Wno-unused-parameter
OPT      ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -DNLLM_BUILDING_LIBRARY -Iinclude -Isrc -Ikernels -MMD -MP
# No fused multiply-adds the source does not write: the SIMD kernels promise sums bit-equal to
# the scalar reference (compiled without FMA), and clang, unlike gcc in ISO C mode, contracts
# a * b + c by default (test_kernels' packed_vs_ref failed seven formats on AVX2 with clang).
FPFLAGS  := -ffp-contract=off
CFLAGS   += -std=c11 $(OPT) $(WARN) $(FPFLAGS) -fPIC -fvisibility=hidden -fopenmp $(SAN)
PKGS     := libpcre2-8 libutf8proc libcjson
DEP_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEP_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpcre2-8 -lutf8proc -lcjson)
# OpenBLAS's serial build (Debian's libopenblas-serial-dev): it has no threads and no process-wide
# thread count, so the library never changes another library's global state (the pool's threads
# each run a single-threaded sgemm) and a process under `ulimit -v` can exit (the threaded build's
# workers hang in their shutdown there). Debian installs the builds side by side and points
# libopenblas.so.0 at the threaded one, so the serial directory is named at link and at run time
# (RUNPATH). Where it is missing the default OpenBLAS is linked and the library leaves sgemm
# alone at run time (kernels/cpu/matmul.c, docs/performance.md).
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
OPENBLAS_SERIAL ?= /usr/lib/$(MULTIARCH)/openblas-serial
ifneq ($(wildcard $(OPENBLAS_SERIAL)/pkgconfig/openblas.pc),)
BLAS_CFLAGS := $(shell PKG_CONFIG_PATH=$(OPENBLAS_SERIAL)/pkgconfig pkg-config --cflags openblas)
BLAS_LIBS   := -L$(OPENBLAS_SERIAL) -Wl,-rpath,$(OPENBLAS_SERIAL) -lopenblas
else
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
endif
CPPFLAGS += $(BLAS_CFLAGS) $(DEP_CFLAGS)
LDLIBS   := $(BLAS_LIBS) $(DEP_LIBS) -fopenmp -lm -lpthread
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)
# nllm chat's line editing and history on a terminal: libedit (BSD licence), linked into the nllm
# program only; without it (no libedit-dev) chat reads plain lines.
EDIT_CFLAGS := $(shell pkg-config --cflags libedit 2>/dev/null)
EDIT_LIBS := $(shell pkg-config --libs libedit 2>/dev/null)
# nllm serve's HTTP library: linked into the nllm program only, never into libnativellm.
SERVE_PKGS := libmicrohttpd
SERVE_CFLAGS := $(shell pkg-config --cflags $(SERVE_PKGS) 2>/dev/null)
SERVE_LIBS := $(shell pkg-config --libs $(SERVE_PKGS) 2>/dev/null || echo -lmicrohttpd)

# Kernels for an ISA live in files named *_avx2.c / *_avx512.c / *_neon.c and get that ISA's
# flags only, so the rest of the library stays runnable on any CPU of the architecture (runtime dispatch).
LIB_SRC  := $(wildcard src/*.c src/*/*.c kernels/*.c kernels/cpu/*.c kernels/cuda/*.c)
ifeq ($(ARCH),x86_64)
LIB_SRC  := $(filter-out %_neon.c,$(LIB_SRC))
else ifeq ($(ARCH),aarch64)
LIB_SRC  := $(filter-out %_avx2.c %_avx512.c,$(LIB_SRC))
else
LIB_SRC  := $(filter-out %_avx2.c %_avx512.c %_neon.c,$(LIB_SRC))
endif

# CUDA=1: kernels/cuda/*.cu through nvcc, linked with cudart and cuBLAS. CUDA_ARCHS picks the
# real architectures (sm_XX) to build; PTX of the newest one rides along for later GPUs.
# Without CUDA=1 nothing here is used and the library never needs CUDA at run time.
ifeq ($(CUDA),1)
ifeq ($(wildcard kernels/cuda/*.cu),)
$(error CUDA=1: no kernels/cuda/*.cu found)
endif
NVCC      ?= nvcc
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell which $(NVCC)))
CUDA_ARCHS ?= 80 86 89 90
CUDA_PTX  := $(lastword $(CUDA_ARCHS))
CU_SRC    := $(wildcard kernels/cuda/*.cu)
CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/obj/%.o)
CPPFLAGS  += -DNLLM_CUDA -isystem $(CUDA_HOME)/include
LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
NVFLAGS   := -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Wno-unused-parameter \
             $(if $(WERROR_FLAG),-Werror all-warnings) -DNLLM_BUILDING_LIBRARY -D_GNU_SOURCE -Iinclude -Isrc -Ikernels \
             $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
             -gencode arch=compute_$(CUDA_PTX),code=compute_$(CUDA_PTX)
endif

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(CU_OBJ)
SONAME   := libnativellm.so.$(ABI)
SHLIB    := $(BUILD)/$(SONAME)
STLIB    := $(BUILD)/libnativellm.a
# Every object with its internal symbols global: for the tests, benchmarks and tools that call
# internal functions. Never installed.
INTLIB   := $(BUILD)/libnllm_internal.a
NLLM_OBJ := $(BUILD)/nativellm.o
LD       ?= ld
OBJCOPY  ?= objcopy
CLI      := $(BUILD)/nllm
CLI_SRC  := $(wildcard tools/nllm/*.c tools/serve/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC:= $(wildcard bench/*.c)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: FORCE all test asan ubsan bench install clean format abi-update test-arm test-noavx examples demo check-layers

all: $(SHLIB) $(BUILD)/libnativellm.so $(STLIB) $(CLI)

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx2 -mfma -mf16c -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl \
	  -mavx512vnni -mavx512vbmi -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# The installed nllm finds the bundled model under $(PREFIX)/share when run outside the tree.
# $(BUILD)/datadir.txt changes (and main.o is rebuilt) whenever PREFIX does.
$(BUILD)/obj/tools/nllm/main.o: CPPFLAGS += -DNLLM_DATADIR='"$(PREFIX)/share/nativellm"'
$(BUILD)/obj/tools/nllm/main.o: $(BUILD)/datadir.txt
$(BUILD)/datadir.txt: FORCE
	@mkdir -p $(BUILD)
	@echo '$(PREFIX)/share/nativellm' | cmp -s - $@ || echo '$(PREFIX)/share/nativellm' > $@
FORCE:

$(BUILD)/obj/%.o: %.cu kernels/cuda/cuda_common.cuh kernels/cuda/backend_cuda.h kernels/attention.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(SHLIB): $(NLLM_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libnativellm.so: $(SHLIB)
	ln -sf $(SONAME) $@

# Both libraries are made of one relocatable object in which every symbol but the nllm_ ABI is
# local: the hidden (internal) ones, and what a compiler emits with default visibility (clang's
# OpenMP reduction lock, a common symbol that -d allocates first). So a program linking the
# static library sees only the ABI and cannot clash with internal names (tests/test_archive.c).
$(NLLM_OBJ): $(LIB_OBJ)
	@rm -f $@
	$(LD) -r -d -o $@.tmp $^
	nm -g --defined-only $@.tmp | awk '$$3 !~ /^nllm_/ {print $$3}' > $@.local
	$(OBJCOPY) --localize-hidden --localize-symbols=$@.local $@.tmp $@
	@rm -f $@.tmp $@.local

$(STLIB): $(NLLM_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(INTLIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The CLI is a client of the public ABI: compiled with include/ as its only project header
# folder and linked with the installed-form static archive (so it runs from the build tree
# without LD_LIBRARY_PATH), never the internal one.
CLI_CPPFLAGS := $(filter-out -DNLLM_BUILDING_LIBRARY -Isrc -Ikernels,$(CPPFLAGS))
$(BUILD)/obj/tools/%.o: CPPFLAGS := $(CLI_CPPFLAGS)
$(CLI): $(CLI_SRC:%.c=$(BUILD)/obj/%.o) $(STLIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(SERVE_LIBS) $(EDIT_LIBS)
$(BUILD)/obj/tools/serve/%.o: CPPFLAGS += $(SERVE_CFLAGS)
ifneq ($(EDIT_LIBS),)
$(BUILD)/obj/tools/nllm/cmd_chat.o: CPPFLAGS += $(EDIT_CFLAGS) -DNLLM_HAVE_LIBEDIT
endif

# Tests link the internal archive: they may test internal (hidden) functions too. They depend
# on the installed-form archive as well, which test_archive inspects.
$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(INTLIB) $(STLIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Itests -o $@ $< $(INTLIB) $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(INTLIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(INTLIB) $(LDLIBS)

# NLLM_TESTDATA defaults to ../shared/testdata (tests skip cleanly where it is absent).
# Runs the examples, then every Check program and the Python suite, and ends with one line of
# totals. Python cannot load a sanitizer build, so that part is skipped there.
test: all $(TESTS) examples check-layers
	@$(MAKE) --no-print-directory run-examples
	@NLLM_BUILD=$(BUILD) NLLM_PYTHON_LIB=$(if $(SAN),,$(SHLIB)) sh tests/run_tests.sh $(TESTS) \
	  tests/server/run.sh tests/server/page.sh tests/server/grammar.sh \
	  tests/server/embed.sh tests/server/tools.sh tests/server/lora.sh

# The include layering of docs/architecture.md, checked on the code's own #include lines.
check-layers:
	@python3 tools/check_layers.py

asan:
	$(MAKE) BUILD=build-asan SAN="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=undefined,float-cast-overflow" OPT="-O1 -g" test

ubsan:
	$(MAKE) BUILD=build-ubsan SAN="-fsanitize=undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow" OPT="-O1 -g" test

# bench_lora measures adapters on a model: here the bundled one, with an adapter gen-lora writes
bench: all $(BENCHES)
	@$(CLI) gen-lora -m models/stories260K.gguf -o $(BUILD)/bench/lora-r16.gguf >/dev/null
	@for b in $(BENCHES); do echo "== $$b"; case $$b in \
	  */bench_lora) $$b models/stories260K.gguf $(BUILD)/bench/lora-r16.gguf || exit 1 ;; \
	  *) $$b || exit 1 ;; esac; done

install: all
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/nativellm.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(SHLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libnativellm.so
	install -m 644 $(STLIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/
	install -d $(DESTDIR)$(PREFIX)/share/nativellm
	install -m 644 models/stories260K.gguf models/LICENSE.llama2.c $(DESTDIR)$(PREFIX)/share/nativellm/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@REQUIRES@|$(PKGS)|' \
	  -e 's|@LIBS@|$(BLAS_LIBS) -fopenmp -lm -lpthread|' \
	  tools/nativellm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nativellm.pc

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cpp' '*.cu')

clean:
	rm -rf build build-*

include examples/examples.mk
include python/python.mk

-include $(LIB_OBJ:.o=.d) $(CLI_SRC:%.c=$(BUILD)/obj/%.d)

# Deliberately accept the current exported symbols and struct layouts as the ABI.
abi-update: all $(BUILD)/tests/test_abi
	NLLM_ABI_UPDATE=1 NLLM_BUILD=$(BUILD) $(BUILD)/tests/test_abi

# GPU kernel tests and benchmarks: plain programs (not Check) built only with CUDA=1; the test
# prints "SKIP: no CUDA device" and exits 0 on a machine without a GPU. tools/gpu-check.sh runs
# both on a GPU machine.
GPU_TEST  := $(BUILD)/tests/gpu/test_cuda_kernels
GPU_MODEL_TEST := $(BUILD)/tests/gpu/test_cuda_models
GPU_BENCH := $(BUILD)/bench/gpu/bench_cuda
$(BUILD)/tests/gpu/%: tests/gpu/%.c $(INTLIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(INTLIB) $(LDLIBS)
$(BUILD)/bench/gpu/%: bench/gpu/%.c $(INTLIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(INTLIB) $(LDLIBS)
# The unpacking logic of the CUDA kernels run on the CPU: needs nvcc, not a GPU.
$(BUILD)/tests/gpu/test_cuda_unpack: tests/gpu/test_cuda_unpack.cu kernels/cuda/matmul.cu \
    kernels/cuda/cuda_common.cuh $(INTLIB)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@.o
	$(CC) $(CFLAGS) -o $@ $@.o $(INTLIB) $(LDLIBS)
.PHONY: test-gpu bench-gpu test-gpu-host
ifeq ($(CUDA),1)
test-gpu-host: $(BUILD)/tests/gpu/test_cuda_unpack
	./$(BUILD)/tests/gpu/test_cuda_unpack
test-gpu: $(GPU_TEST) $(GPU_MODEL_TEST) $(CLI)
	./$(GPU_TEST)
	./$(GPU_MODEL_TEST) $(CLI)
bench-gpu: $(GPU_BENCH)
	./$(GPU_BENCH)
else
test-gpu bench-gpu test-gpu-host:
	@echo "$@ needs the CUDA build: make CUDA=1 $@"; exit 1
endif

# Runtime dispatch: the same binary on an emulated CPU without AVX2 takes the scalar kernels,
# on one with AVX2 but no AVX-512 the AVX2 tier; both must tell the golden story.
test-noavx: all
	NLLM_BUILD=$(BUILD) sh tests/check_noavx.sh

# The first command a new user runs: build, then tell the bundled model's story.
demo: all
	./$(CLI) run -m models/stories260K.gguf -p "Once upon a time" -n 200 --temp 0
-include kernels/arm.mk
-include fuzz/fuzz.mk
-include tests/sanitize.mk
