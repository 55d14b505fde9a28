# libFuzzer harnesses and the thread-sanitizer build. Included from the Makefile.
#   make fuzz [FUZZ_SECONDS=60]   build every harness into build-fuzz/ and run each for that long
#                                 (make -j2 -Otarget fuzz: two harnesses at a time)
#   make fuzz-build               build only
#   make tsan                     clang -fsanitize=thread build of the thread tests (build-tsan/)
# Crash inputs land in build-fuzz/crashes/; turn each into tests/regress/ after fixing it.

FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
# Every fuzz/fuzz_*.c is a harness.
FUZZ_NAMES   ?= $(basename $(notdir $(wildcard fuzz/fuzz_*.c)))
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/%)
# -max_len per harness, sized to its format: GGUF seeds are whole tiny models (~100 KB).
FUZZ_MAXLEN_fuzz_gguf        := 262144
FUZZ_MAXLEN_fuzz_safetensors := 8192
FUZZ_MAXLEN_fuzz_hf          := 8192
FUZZ_MAXLEN_fuzz_tokenizer   := 4096
FUZZ_MAXLEN_fuzz_chat        := 4096
FUZZ_MAXLEN_fuzz_template    := 8192
FUZZ_MAXLEN_fuzz_tokjson     := 16384
FUZZ_MAXLEN_fuzz_gbnf        := 4096
FUZZ_MAXLEN_fuzz_json_schema := 8192
FUZZ_MAXLEN_fuzz_serve_request := 8192
FUZZ_MAXLEN_fuzz_lora        := 65536
FUZZ_MAXLEN_fuzz_state       := 16384
# The SIMD kernel files without UBSan's pointer-overflow check: their always-inline tile
# functions, specialised per head count and type, carry so many pointer sums that the check
# made clang spend most of the fuzz build on four files (attention_avx2.c 166 s of CPU, 30 s
# without it; quant_iq_avx512.c 82 s, quant_avx512.c 45 s, quant_iq_avx2.c 16 s). ASan still
# checks every access those files make, and `make asan` (gcc's -fsanitize=undefined includes
# pointer-overflow) runs the kernels under the full check.
ifeq ($(BUILD),$(FUZZ_BUILD))
$(FUZZ_BUILD)/obj/%_avx2.o $(FUZZ_BUILD)/obj/%_avx512.o: CFLAGS += -fno-sanitize=pointer-overflow
endif
# Harnesses of code outside the library name its sources here.
FUZZ_EXTRA_serve_request := -Itools/serve tools/serve/request.c tools/serve/textout.c \
  tools/serve/toolcall.c
FUZZ_FLAGS   ?= -rss_limit_mb=2048 -timeout=20 -print_final_stats=1

.PHONY: fuzz fuzz-build fuzz-seeds tsan fuzz-lib

# The instrumented library is the normal one built by a sub-make into build-fuzz/; the guard
# keeps that sub-make (where BUILD is build-fuzz) from seeing this rule again.
ifneq ($(BUILD),$(FUZZ_BUILD))
fuzz-lib:
	$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT="-O1 -g" \
	  SAN="$(FUZZ_SAN)" $(FUZZ_BUILD)/libnllm_internal.a

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h fuzz-lib
	$(FUZZ_CC) $(CPPFLAGS) -std=c11 -O1 -g $(WARN) -fopenmp \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o $@ $< $(FUZZ_EXTRA_$*) $(FUZZ_BUILD)/libnllm_internal.a $(LDLIBS)
endif

# Seed generator (a normal build): writes the tiny models of fuzz/corpus/.
$(BUILD)/fuzz/gen_seeds: fuzz/gen_seeds.c $(INTLIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(INTLIB) $(LDLIBS)

fuzz-seeds: $(BUILD)/fuzz/gen_seeds
	$(BUILD)/fuzz/gen_seeds fuzz/corpus

fuzz-build: $(FUZZ_BINS)

# Each harness grows its own working corpus in build-fuzz/corpus/NAME, starting from the
# committed seeds in fuzz/corpus/NAME (read only).
# One target per harness, so that `make -j2 -Otarget fuzz` runs two at a time (each libFuzzer
# run is single-threaded: run one after another they leave a core idle for the whole time).
fuzz: $(FUZZ_NAMES:%=fuzz-run-%)

fuzz-run-%: $(FUZZ_BUILD)/%
	@sh fuzz/run.sh $(FUZZ_BUILD) $* $(or $(FUZZ_MAXLEN_$*),4096) $(FUZZ_SECONDS) "$(FUZZ_FLAGS)"
