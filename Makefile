# nomadkit — the two commands a newcomer runs: `make demo` and `make test`.
# `make setup` is idempotent: it installs the Debian packages the lab and the validators need,
# creates .venv and installs nomadkit into it (editable).

SHELL := /bin/bash
APT_PACKAGES := qemu-system-x86 qemu-utils debootstrap nginx ffmpeg srt-tools nftables chrony nut-server nut-client network-manager ovmf zstd iproute2 openssh-client openssh-server shellcheck e2fsprogs dosfstools gdisk mtools fdisk kmod cpio socat curl jq dnsmasq-base sudo
VENV := .venv
PY := $(VENV)/bin/python
NOMADKIT := $(VENV)/bin/nomadkit
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup apt venv demo demo-down test test-extended lint bench webhook-layer clean

setup: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "setup: Debian packages present"; fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	@touch $@

# The demo tour's first stop on this machine: local cloud, QEMU kits, deploy, preflight.
# It stays up afterwards (the summary says how to poke it; a second run reuses it);
# `make demo-down` stops it.
demo: setup
	$(NOMADKIT) validate tours/demo.yaml
	$(NOMADKIT) up tours/demo.yaml --local

demo-down: venv
	$(NOMADKIT) down tours/demo.yaml

# CI runs `make test`: every unit, cloud and lab test but the long lab drills (`extended`),
# which `make test-extended` runs (about 45 more minutes on TCG kits).
test: setup
	$(PY) -m pytest -m "not extended" $(PYTEST_ARGS)

test-extended: setup
	$(PY) -m pytest -m extended $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m bench

# The payment webhook's Lambda layer (stacks/tour reads the folder, nomadkit:webhookLayer, and
# Pulumi zips it): what the webhook code imports that the Lambda runtime lacks — cryptography
# (boto3 is in the runtime) — as wheels for the function's runtime (python3.12, x86_64, as
# stacks/tour/tourcloud/payments.py says), at the version this venv tests against.
WEBHOOK_LAYER := stacks/tour/build/webhook-layer
LAMBDA_PYTHON := 3.12
LAMBDA_PLATFORM := manylinux2014_x86_64

webhook-layer: venv
	rm -rf $(WEBHOOK_LAYER)
	$(PY) -m pip install -q --only-binary=:all: --implementation cp --platform $(LAMBDA_PLATFORM) \
	  --python-version $(LAMBDA_PYTHON) --target $(WEBHOOK_LAYER)/python \
	  "cryptography==$$($(PY) -c 'from importlib.metadata import version; print(version("cryptography"))')"
	@echo "webhook-layer: $$(du -sh $(WEBHOOK_LAYER) | cut -f1) in $(WEBHOOK_LAYER)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache stacks/tour/build
