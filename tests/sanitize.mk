# Sanitizer and endurance targets beyond `make asan` / `make ubsan`. Included from the Makefile.
#   make tsan    clang -fsanitize=thread build (build-tsan/) running the threading tests and
#                test_api. clang + libomp because GCC's libgomp is not TSan-instrumented and
#                reports its own barriers as races.
#   make soak    20,000 generated tokens with periodic rewinds; prints RSS before and after.
#   make soak-valgrind   a shorter soak under valgrind memcheck.

TSAN_TESTS   ?= test_threads test_api
TSAN_OPTIONS_RUN := halt_on_error=1 second_deadlock_stack=1 \
                    suppressions=$(CURDIR)/tests/tsan.supp

.PHONY: tsan soak soak-valgrind

ifneq ($(BUILD),build-tsan)
tsan:
	$(MAKE) --no-print-directory BUILD=build-tsan CC=clang OPT="-O1 -g" \
	  SAN="-fsanitize=thread -fno-omit-frame-pointer" \
	  $(TSAN_TESTS:%=build-tsan/tests/%)
	@for t in $(TSAN_TESTS); do echo "== tsan $$t"; \
	  TSAN_OPTIONS="$(TSAN_OPTIONS_RUN)" CK_FORK=no build-tsan/tests/$$t || exit 1; done
endif

SOAK_TOKENS ?= 20000

soak: $(BUILD)/bench/soak
	$(BUILD)/bench/soak $(SOAK_TOKENS)

soak-valgrind: $(BUILD)/bench/soak
	NLLM_SOAK_NO_RSS_CHECK=1 valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  $(BUILD)/bench/soak 2000
