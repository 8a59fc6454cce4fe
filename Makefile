# wit: the commands that work on a fresh machine with only the Rust toolchain.
#   make test    build and run every test (what CI runs, via .ci/run); the
#                data-parallel ones over Open MPI install it first (scripts/test-mpi.sh)
#   make train   build wit (the dev build make test uses) and run the pipeline end to end
#                on the embedded default, into runs/demo
#   make bench   benchmarks (release builds; figures printed, not asserted)
#   make bench-scale  the stages on generated corpora (WIT_SCALE_ROWS=1000000,10000000)
#   make fmt     format the code
#   make lint    check formatting, and clippy with warnings denied
#   make report-screenshot DATASET=dir   the stats report in headless Chromium

CARGO ?= cargo
RUN_DIR ?= runs/demo

.PHONY: test train bench bench-scale fmt lint release report-screenshot

# Each test that cannot run here (a reference or service missing) writes a
# line to SKIP_LOG (wit-testkit); the run ends by counting them. Under
# WIT_NO_SKIP=1 (.ci/run) a skip fails instead.
SKIP_LOG := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/wit-skips.log
test:
	@mkdir -p "$(dir $(SKIP_LOG))" && rm -f "$(SKIP_LOG)"
	WIT_SKIP_LOG="$(SKIP_LOG)" $(CARGO) test --workspace
	WIT_SKIP_LOG="$(SKIP_LOG)" CARGO="$(CARGO)" scripts/test-mpi.sh
	@if [ -s "$(SKIP_LOG)" ]; then \
		echo "make test: $$(wc -l < "$(SKIP_LOG)") test(s) skipped, so not every check ran:"; \
		sed 's/^/  /' "$(SKIP_LOG)"; \
	else echo "make test: every test ran (none skipped)"; fi

release:
	$(CARGO) build --release --bin wit

# The dev build: its tensor kernels and image codecs are optimised (Cargo.toml),
# and it is the build `make test` leaves, so a tested tree trains at once.
train:
	$(CARGO) build --bin wit
	RUN_DIR=$(RUN_DIR) WIT=$${CARGO_TARGET_DIR:-target}/debug/wit scripts/train.sh

bench:
	$(CARGO) bench --workspace

bench-scale:
	WIT_BENCH_SCALE=1 $(CARGO) bench --bench scale

# The HTML report of DATASET (after `wit stats DATASET`) in headless Chromium.
report-screenshot:
	@command -v chromium >/dev/null || { echo "make report-screenshot needs Chromium (Debian: apt-get install chromium)" >&2; exit 2; }
	@test -f "$(DATASET)/stats/report.html" || { echo "no $(DATASET)/stats/report.html: run wit stats $(DATASET) first (DATASET=... names the dataset)" >&2; exit 2; }
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,2400 \
		--screenshot=$(abspath $(DATASET))/stats/report.png file://$(abspath $(DATASET))/stats/report.html

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
