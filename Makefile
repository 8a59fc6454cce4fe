# wit: the commands that work on a fresh machine with only the Rust toolchain.
#   make test    build and run every test (what CI runs, via .ci/run)
#   make train   build wit (release) and run the pipeline end to end on the embedded default
#   make bench   benchmarks (release builds; figures printed, not asserted)
#   make fmt     format the code
#   make lint    check formatting, and clippy with warnings denied
#   make report-screenshot DATASET=dir   the stats report in headless Chromium

CARGO ?= cargo
RUN_DIR ?= runs/demo

.PHONY: test train bench fmt lint release report-screenshot

test:
	$(CARGO) test --workspace

release:
	$(CARGO) build --release --bin wit

train: release
	RUN_DIR=$(RUN_DIR) WIT=$${CARGO_TARGET_DIR:-target}/release/wit scripts/train.sh

bench:
	$(CARGO) bench --workspace

# The HTML report of DATASET (after `wit stats DATASET`) in headless Chromium.
report-screenshot:
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,2400 \
		--screenshot=$(abspath $(DATASET))/stats/report.png file://$(abspath $(DATASET))/stats/report.html

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
