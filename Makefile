# Thin wrappers over scripts/ and the `patternbench` command. Run as root on Debian/Ubuntu.
VENV    ?= .venv
BIN     := $(VENV)/bin
PB      := $(BIN)/patternbench
PYTEST  := $(BIN)/python -m pytest
RESULTS ?= results

.PHONY: setup test test-unit experiment study scale plan nightly bench clean cluster-up cluster-down

## setup: host packages, the Python venv, Kubernetes/etcd/CoreDNS built into ~/.cache/patternbench
setup:
	bash scripts/setup-host.sh $(VENV)
	$(PB) setup

## test: everything CI runs: Go tests of the data plane, unit tests, then the cluster tests on
## a local cluster it brings up and takes down again (3 nodes for the apps, 1 for the in-cluster load)
test: setup
	cd images && go test -count=1 ./...
	$(PYTEST) tests experiments -v --profile short --load-nodes 1 --results $(RESULTS) --junitxml=$(RESULTS)/junit-tests.xml

## test-unit: the fast tests only (no cluster, no root needed)
test-unit:
	$(PYTEST) tests -m "not cluster and not cluster_down" -q

## experiment: the main job, the article's question: no agent, sidecar, DaemonSet and hybrid,
## for the mesh and the log agent, rolling upgrades, 3 interleaved trials, the calibration;
## the report opens with the answer (who wins each claim, by how much, with its interval)
EXPERIMENT_ARGS := --profile full --repeat 3 --calibrate --pattern none --pattern sidecar --pattern daemonset --pattern hybrid \
	--agent mesh --agent logging --upgrade rolling --injection client --no-naive
experiment: setup
	$(PB) run $(EXPERIMENT_ARGS) --results $(RESULTS)

## study: everything: every pattern (ambient too), in-place and webhook upgrades, naive
## variants, the fault family and the load sweep; then the mesh's upgrades under long-lived
## gRPC traffic, unary calls and streams (every pattern whose proxies carry HTTP/2); then
## HAProxy as the mesh beside meshproxy (agents/haproxy.yaml), rolling and in place. Every
## run reports; the exit status is the worst of them.
STUDY_ARGS := --profile full --repeat 3 --calibrate --faults --sweep 100,200,400,800,1600
LONG_LIVED_ARGS := --profile full --repeat 3 --agent mesh --upgrade rolling --upgrade in-place --injection client
HAPROXY_ARGS := --profile full --repeat 3 --agent-file agents/haproxy.yaml --agent mesh --pattern sidecar --pattern daemonset --pattern hybrid \
	--upgrade rolling --upgrade in-place --injection client --no-naive
study: setup
	rc=0; \
	$(PB) run $(STUDY_ARGS) --results $(RESULTS) || rc=$$?; \
	$(PB) run $(LONG_LIVED_ARGS) --workload grpc-unary --results $(RESULTS) || rc=$$?; \
	$(PB) run $(LONG_LIVED_ARGS) --workload grpc-stream --results $(RESULTS) || rc=$$?; \
	$(PB) run $(HAPROXY_ARGS) --results $(RESULTS) || rc=$$?; \
	exit $$rc

## plan: what `make experiment` would run and how long it should take, without a cluster
plan:
	$(PB) run $(EXPERIMENT_ARGS) --results $(RESULTS) --plan

## scale: the five patterns at 3, 6 and 9 services (generated topologies) and on 2, 3, 4
## and 6 nodes, each point's mesh-agent upgrade under load; scale.json with fits, the held-out
## largest size and node count, projections to 1000 services on 10 and 50 nodes. The sizes are
## what a 2-core machine holds (at 12 a sidecar roll saturates it and probes time out); on a bigger one:
## make scale SCALE_ARGS="--services 3,6,12,24,48 --nodes 2,3,4,6"
SCALE_ARGS ?= --services 3,6,9 --nodes 2,3,4,6
scale: setup
	$(PB) scale $(SCALE_ARGS) --results $(RESULTS)

## nightly: what the nightly workflow does, on the local provider: the matrix (short profile),
## then every figure against baselines/local.json (exit 1 on a regression)
nightly: setup
	$(PB) run --profile short --results $(RESULTS)/nightly
	$(PB) compare baselines/local.json "$$(ls -d $(RESULTS)/nightly/pb-* | tail -n 1)"

## bench: benchmarks that print numbers and write $(RESULTS)/bench.json
bench: setup
	$(BIN)/python -m patternbench.bench --results $(RESULTS)

cluster-up: setup
	$(PB) cluster up

cluster-down:
	$(PB) cluster down

## clean: take any local cluster down and remove results and the venv (the build cache stays)
clean:
	-[ -x $(PB) ] && $(PB) cluster down
	rm -rf $(RESULTS) $(VENV)
