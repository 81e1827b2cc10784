# fedfaas — developer entry points. Every target does its own setup.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint typecheck demo up down status bench-quick clean

# nginx is the gateway's buffering front (docs/gateway-frontend.md). On Debian as root it is
# installed when missing; policy-rc.d keeps the package's postinst from starting a system nginx.
setup: $(STAMP)
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    own=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	      chmod +x /usr/sbin/policy-rc.d; own=1; fi; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends nginx-light); rc=$$?; \
	    if [ $$own = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; \
	  else echo "nginx is missing: install the Debian package nginx-light (or nginx) as root" >&2; fi; }
	@# iproute2 (ip, tc) builds the test network of `fedfaas up --topology` (docs/network.md).
	@{ command -v tc >/dev/null 2>&1 || test -x /usr/sbin/tc; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends iproute2; \
	  else echo "iproute2 is missing: only --topology loopback will work" >&2; fi; }

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the CPU build; installing it first keeps pip from pulling CUDA wheels.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy fedfaas gateway cache_engine request_tracker bench
	for f in functions/*/handler.py; do $(BIN)/mypy $$f || exit 1; done

demo: setup
	$(BIN)/fedfaas demo

up: setup
	$(BIN)/fedfaas up

down: setup
	$(BIN)/fedfaas down

status: setup
	$(BIN)/fedfaas status

clean:
	rm -rf $(VENV) .fedfaas build *.egg-info
