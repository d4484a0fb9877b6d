# The two commands: `make run MEDIA=~/Pictures` (set up, index, serve on :8000) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test test-fast fuzz docs bench bench-ann bench-words bench-fair bench-photos bench-memory demo clean

setup: $(STAMP)

# torch and torchvision first, pinned, so pip takes the builds on this machine's disk.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	# Only for its ClipClient in the compatibility test: its own dependencies clash with ours.
	$(BIN)/pip install --quiet --no-deps clip-retrieval==2.45.0
	touch $(STAMP)

PORT ?= 8000

run: setup
	@test -n "$(MEDIA)" || { echo "usage: make run MEDIA=/path/to/pictures [PORT=8000]"; exit 2; }
	$(BIN)/spyglass index "$(MEDIA)"
	$(BIN)/spyglass serve --port "$(PORT)"

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# Long fuzzing and kill -9 soak runs; the suite runs a bounded version of each.
fuzz: setup
	SPYGLASS_FUZZ_EXAMPLES=1000 SPYGLASS_HOSTILE_UPLOADS=20000 SPYGLASS_HOSTILE_IMPORTS=2000 SPYGLASS_TEST_KILLS=40 \
		$(BIN)/python -m pytest tests/test_api_fuzz.py tests/test_hostile_uploads.py tests/test_paths.py tests/test_understand.py \
		tests/test_import_fuzz.py tests/test_crash_and_swap.py -s

# The whole loop offline: Debian's tuxpaint stamps, a dual encoder trained on them from scratch,
# indexed and served on http://127.0.0.1:$(PORT). Everything lands in demo/.
DEMO := $(CURDIR)/demo
demo: setup
	$(BIN)/python benchmarks/tuxpaint.py --work $(DEMO)  # reuses demo/model when it is there
	SPYGLASS_HOME=$(DEMO)/home SPYGLASS_MODEL=$(CURDIR)/benchmarks/small-clip.json SPYGLASS_PRETRAINED=$(DEMO)/model \
		$(BIN)/spyglass index $(DEMO)/stamps
	SPYGLASS_HOME=$(DEMO)/home $(BIN)/spyglass serve --port "$(PORT)"

# The generated pages of docs/ (commands, settings); then the site, as CI builds it.
docs: setup
	$(BIN)/python docs/generate.py
	$(BIN)/mkdocs build --strict --site-dir site

bench: setup
	$(BIN)/python benchmarks/index_throughput.py

# A text query's latency while another person floods uploads, with and without fair use (~8 minutes).
bench-fair: setup
	$(BIN)/python benchmarks/fair_use.py

# Exact against approximate search on a million synthetic vectors (about 15 minutes here).
bench-ann: setup
	$(BIN)/python benchmarks/ann.py --items 1000000

# What reading photo facts and making thumbnails at index time add to a run (~3 minutes).
bench-photos: setup
	$(BIN)/python benchmarks/photo_stages.py

# A serving worker's anonymous memory on 300,000 vectors under a 256 MiB index budget (~10 minutes).
bench-memory: setup
	$(BIN)/python benchmarks/worker_memory.py

# Words in the media: recall@5 by search mode, what OCR and speech cost, hybrid query latency at 1M items.
bench-words: setup
	$(BIN)/python benchmarks/words.py

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
