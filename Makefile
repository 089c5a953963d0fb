# heapscope: the two commands a newcomer needs.
#   make run   sets up the machine and opens the app on the bundled default scenario
#   make test  sets up the machine and runs formatting, lint and every test

CARGO ?= cargo

.PHONY: run test setup fmt lint check bench

setup:
	@./.ci/setup

run: setup
	$(CARGO) run --release -p heapscope

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

check: fmt lint
	$(CARGO) test --workspace --locked

test: setup check

bench: setup
	$(CARGO) bench --workspace --locked
