# The README's two commands are the contract: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SEEDS ?= 20000
MINUTES ?= 30
NETNS_MINUTES ?= 10
BANK_MINUTES ?= 10
# pytest workers: tests wait on node processes and sockets more than they compute
TEST_JOBS ?= 2

.PHONY: venv run demo-down test soak bench lint clean deploy-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Brings a local 3-node cluster up (dict backend), runs a ten-second demo and leaves it
# running with the commands to use and stop it.
run: $(STAMP)
	$(PY) -m zraft.cluster.demo --dir .zraft-demo

demo-down: $(STAMP)
	$(VENV)/bin/zraft cluster down --dir .zraft-demo --purge

test: $(STAMP)
	$(PY) -m ruff check zraft supervisors tests bench
	$(PY) -m pytest -q -m "not slow" -n $(TEST_JOBS)

# Long runs, not part of `make test`: the simulator over SEEDS seeds, Jepsen-style fault runs
# against real nodes for MINUTES (and NETNS_MINUTES in network namespaces with host names,
# skipped without root), the bank workload on the sqlite backend for BANK_MINUTES (and
# NETNS_MINUTES in namespaces), a protocol fuzz campaign, the `slow` tests (50 leader kills
# with live sessions holding ephemeral keys). Each prints its figures and exits non-zero on
# a finding. Last, the figures of a short bench.sqlite_big (a 20 MB sqlite database: node
# RSS, a killed node serving again, a follower catching up).
soak: $(STAMP)
	$(PY) -m pytest -q -s -m slow tests/acceptance/test_session_takeover.py tests/jepsen/test_jepsen_bank.py
	$(PY) -m zraft.testing.sim.sweep --seeds $(SEEDS) --steps 2000 --jobs 2
	$(PY) -m zraft.testing.sim.sweep --seeds $(SEEDS) --steps 2000 --jobs 2 --transfers on
	$(PY) -m zraft.testing.sim.sweep --seeds $(SEEDS) --steps 2000 --jobs 2 --quiesce on
	$(PY) -m zraft.testing.jepsen.run --minutes $(MINUTES) --workdir soak-runs/jepsen
	$(PY) -m zraft.testing.jepsen.run --netns --names --tls --minutes $(NETNS_MINUTES) --workdir soak-runs/netns
	$(PY) -m zraft.testing.jepsen.run --workload bank --minutes $(BANK_MINUTES) --workdir soak-runs/bank
	$(PY) -m zraft.testing.jepsen.run --workload bank --netns --names --tls --minutes $(NETNS_MINUTES) --workdir soak-runs/netns-bank
	$(PY) -m zraft.testing.jepsen.fuzz --cases 2000 --workdir soak-runs/fuzz
	$(PY) -m zraft.testing.jepsen.frame_fuzz --cases 20000 --workdir soak-runs/frame-fuzz
	$(PY) -m bench.sqlite_big --rows 200000 --catch-up-rows 100000

# zraft against PySyncObj (W1-W6 of issue 7), alternating, 3 repeats: medians, ranges, ratios.
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS ?=
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench.compare --json bench/results/latest.json --table bench/results/latest.md $(BENCH_ARGS)

# deploy/ checked as far as this machine can (README: Deploying): file consistency, configs
# through zraft's loader, systemd-analyze verify, the Kubernetes schema, DNS-name peer ids.
deploy-check: $(STAMP)
	$(PY) -m pip install -q -e '.[test,deploy-check]'
	$(PY) -m pytest -q -p no:xdist tests/deploy tests/integration/test_dns_names.py

lint: $(STAMP)
	$(PY) -m ruff check zraft supervisors tests bench

clean:
	rm -rf $(VENV) build *.egg-info
