# Examples, built against the shared library in $(BUILD) with an rpath, so they run from the
# build tree as they are. Included by the top-level Makefile (`include examples/examples.mk`),
# which provides BUILD, CC, SAN and SHLIB.
#   make examples       build $(BUILD)/examples/simple and $(BUILD)/examples/chat
#   make run-examples   run them (and the Python examples) on the bundled model

EXAMPLE_BINS := $(BUILD)/examples/simple $(BUILD)/examples/chat $(BUILD)/examples/readme_example
EXAMPLE_MODEL ?= models/stories260K.gguf
EXAMPLE_WARN := -Wall -Wextra $(WERROR_FLAG)
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

# The C example in README.md, extracted and compiled exactly as printed there, so the README
# cannot drift from the API.
$(BUILD)/examples/readme_example.c: README.md
	@mkdir -p $(dir $@)
	sed -n '/^```c$$/,/^```$$/p' README.md | sed '1d;$$d' > $@
	@test -s $@ || { echo "README.md has no \`\`\`c example"; exit 1; }

$(BUILD)/examples/readme_example: $(BUILD)/examples/readme_example.c include/nativellm.h $(SHLIB) $(BUILD)/libnativellm.so
	$(CC) -std=c11 -O2 -g $(EXAMPLE_WARN) -Wno-unused-parameter $(SAN) -Iinclude -o $@ $< $(EXAMPLE_LINK)

run-examples: examples
	$(BUILD)/examples/readme_example > /dev/null
	$(BUILD)/examples/simple $(EXAMPLE_MODEL)
	echo "Once upon a time" | $(BUILD)/examples/chat $(EXAMPLE_MODEL)
ifeq ($(SAN),)
	NATIVELLM_LIB=$(SHLIB) python3 examples/stream.py -m $(EXAMPLE_MODEL) -n 64 --temp 0
	NATIVELLM_LIB=$(SHLIB) python3 examples/app_service.py -m $(EXAMPLE_MODEL) -n 64
else
	@echo "run-examples: Python examples skipped in a sanitizer build (python3 cannot load an ASan library)"
endif
