# Python package tests, included by the top-level Makefile (`include python/python.mk`), which
# provides SHLIB and SAN. The tests load $(SHLIB) through NATIVELLM_LIB; without it they find
# build/ relative to the package. Sanitizer builds skip them: python3 cannot dlopen an ASan
# library.
.PHONY: test-python

test-python: $(SHLIB)
ifeq ($(SAN),)
	NATIVELLM_LIB=$(SHLIB) python3 python/run_tests.py
else
	@echo "test-python: skipped in a sanitizer build"
endif
