# Examples, built against the shared library in $(BUILD) with an rpath, so they run from the
# build tree as they are. Included by the top-level Makefile (`include examples/examples.mk`),
# which provides BUILD, CC, SAN and SHLIB.
#   make examples       build $(BUILD)/examples/simple and $(BUILD)/examples/chat
#   make run-examples   run them (and the Python examples) on the bundled model

EXAMPLE_BINS := $(BUILD)/examples/simple $(BUILD)/examples/chat
EXAMPLE_MODEL ?= models/stories260K.gguf
EXAMPLE_WARN := -Wall -Wextra -Werror
# $ORIGIN/..: the examples live in $(BUILD)/examples, the library in $(BUILD).
EXAMPLE_LINK := -L$(BUILD) -lnativellm -Wl,-rpath,'$$ORIGIN/..'

.PHONY: examples run-examples

examples: $(EXAMPLE_BINS)

$(BUILD)/examples/simple: examples/simple.c include/nativellm.h $(SHLIB) $(BUILD)/libnativellm.so
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g $(EXAMPLE_WARN) $(SAN) -Iinclude -o $@ $< $(EXAMPLE_LINK)

$(BUILD)/examples/chat: examples/chat.cpp include/nativellm.h $(SHLIB) $(BUILD)/libnativellm.so
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -g $(EXAMPLE_WARN) $(SAN) -Iinclude -o $@ $< $(EXAMPLE_LINK)

run-examples: examples
	$(BUILD)/examples/simple $(EXAMPLE_MODEL)
	echo "Once upon a time" | $(BUILD)/examples/chat $(EXAMPLE_MODEL)
	NATIVELLM_LIB=$(SHLIB) python3 examples/stream.py -m $(EXAMPLE_MODEL) -n 64 --temp 0
	NATIVELLM_LIB=$(SHLIB) python3 examples/embed.py -m $(EXAMPLE_MODEL) -n 64
