# `make test-arm`: cross-compiles the CPU kernels for aarch64 (static, no BLAS) with a plain-C
# test that compares every NEON kernel against the scalar reference, and runs it under qemu.
ARM_CC    ?= aarch64-linux-gnu-gcc
ARM_QEMU  ?= qemu-aarch64
ARM_BUILD ?= build-arm
ARM_SRC   := src/core/core.c src/formats/ggml_types.c $(wildcard kernels/*.c) $(filter-out %_avx2.c %_avx512.c,$(wildcard kernels/cpu/*.c))
# -Wno-format-truncation: gcc's -O2 false positive on core.c's message buffers
ARM_FLAGS := -static -std=c11 -O2 $(WARN) $(FPFLAGS) -Wno-format-truncation -fopenmp -D_GNU_SOURCE \
             -DNLLM_BUILDING_LIBRARY -DNLLM_NO_BLAS -Iinclude -Isrc -Ikernels

# The same test built for CPUs with the dotprod extension (SDOT in the integer dots).
# One target per program, so that `make -j2 -Otarget test-arm` runs the two under qemu at once.
.PHONY: test-arm test-arm-base test-arm-dotprod
test-arm: test-arm-base test-arm-dotprod
test-arm-base: $(ARM_BUILD)/test_kernels_arm
	$(ARM_QEMU) $(ARM_BUILD)/test_kernels_arm
test-arm-dotprod: $(ARM_BUILD)/test_kernels_arm_dotprod
	$(ARM_QEMU) $(ARM_BUILD)/test_kernels_arm_dotprod

$(ARM_BUILD)/test_kernels_arm: $(ARM_SRC) tests/arm/test_kernels_arm.c $(wildcard kernels/*.h kernels/cpu/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(ARM_CC) $(ARM_FLAGS) -o $@ $(ARM_SRC) tests/arm/test_kernels_arm.c -lm

$(ARM_BUILD)/test_kernels_arm_dotprod: $(ARM_SRC) tests/arm/test_kernels_arm.c $(wildcard kernels/*.h kernels/cpu/*.h tests/*.h)
	@mkdir -p $(dir $@)
	$(ARM_CC) $(ARM_FLAGS) -march=armv8.2-a+dotprod -o $@ $(ARM_SRC) tests/arm/test_kernels_arm.c -lm
