"""Every bad input is one line and exit 2, before any cluster is chosen (issue 22's table).

One table across the CLI's commands, topology files, agent files (test_agent_file.py's own
table, run through the same check) and run directories. Each row: the arguments (files it
names are written first into a fresh directory, TMP in the arguments), and the words the one
line must hold, which name the field. `no_provider` fails a row that gets as far as choosing a
cluster; the results directory must be left as it was.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from patternbench import cli
from tests.unit.test_agent_file import MALFORMED as AGENT_FILES

CHAIN = "entry: a\nservices:\n  - {name: a, calls: [b]}\n  - {name: b}\n"
FILES: dict[str, str | bytes] = {
    "bad.yaml": "x: [\n",
    "latin.yaml": b"\xff\xfe",
    "list.json": "[]\n",
    "trunc.json": '{"a":',
    "topo.yaml": CHAIN,
    "noservices.yaml": "entry: a\nservices: []\n",
    "unknown-call.yaml": "entry: a\nservices:\n  - {name: a, calls: [nobody]}\n",
    "cycle.yaml": "entry: a\nservices:\n  - {name: a, calls: [b]}\n  - {name: b, calls: [a]}\n",
    "twice.yaml": "entry: a\nservices:\n  - {name: a}\n  - {name: a}\n",
    "upper.yaml": "entry: Front\nservices:\n  - {name: Front}\n",
    "newline.yaml": 'entry: a\nservices:\n  - {name: "a\\n"}\n',
    "replicas0.yaml": "entry: a\nservices:\n  - {name: a, replicas: 0}\n",
    "replicas-x.yaml": "entry: a\nservices:\n  - {name: a, replicas: x}\n",
    "no-entry.yaml": "entry: z\nservices:\n  - {name: a}\n",
    "colour.yaml": CHAIN + "colour: blue\n",
    "agents-x.yaml": CHAIN + "agents: {mesh: maybe}\n",
    "extra-agents.yaml": CHAIN + "agents: {extra_agents: 99}\n",
    "alias-bomb.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
    "long-chain.yaml": "entry: s0\nservices:\n" + "".join(f"  - {{name: s{i}, calls: [s{i + 1}]}}\n" for i in range(1099)) + "  - {name: s1099}\n",
    "run/case/case.json": '{"id": "sidecar-mesh", "trial":',
    "norun/readme.txt": "not a run\n",
}

ROWS: list[tuple[str, str]] = [
    # run: the matrix
    ("run --pattern nope", "--pattern: unknown pattern 'nope'"),
    ("run --pattern sidecar --pattern bogus", "unknown pattern 'bogus'"),
    ("run --agent nope", "--agent: unknown agent 'nope'"),
    ("run --upgrade sideways", "--upgrade: unknown upgrade strategy"),
    ("run --injection magic", "--injection: unknown injection"),
    ("run --profile huge", "--profile: unknown profile"),
    ("run --fault nope", "--fault: unknown fault"),
    # run: numbers
    ("run --duration abc", "--duration: 'abc' is not a number"),
    ("run --duration nan", "--duration: nan is not a finite number"),
    ("run --duration inf", "--duration: inf is not a finite number"),
    ("run --duration -5", "--duration must be above 0"),
    ("run --duration 0", "--duration must be above 0"),
    ("run --duration 99999", "at most 3600 s"),
    ("run --users abc", "--users: invalid int value"),
    ("run --users -3", "--users must be at least 1"),
    ("run --users 0", "--users must be at least 1"),
    ("run --repeat 0", "--repeat must be a whole number from 1 to 50"),
    ("run --repeat -1", "--repeat must be"),
    ("run --repeat x", "--repeat: 'x' is not a number"),
    ("run --slo-ms abc", "--slo-ms: 'abc' is not a number"),
    ("run --slo-ms -1", "--slo-ms must be above 0"),
    ("run --slo-ms nan", "--slo-ms: nan is not a finite number"),
    ("run --rps abc", "--rps: 'abc' is not a number"),
    ("run --rps 0", "--rps must be above 0"),
    ("run --rps -10", "--rps must be above 0"),
    ("run --rps 10 --users 5", "--rps and --users are two load modes"),
    ("run --sweep 100,abc", "--sweep: 'abc' is not a number"),
    ("run --sweep 100,0", "--sweep must be above 0"),
    ("run --sweep 100 --rps 50", "--sweep sets the rates itself"),
    ("run --sweep ''", "--sweep: give offered rates"),
    ("run --max-failed-requests -1", "--max-failed-requests must be from 0"),
    ("run --max-failed-requests x", "--max-failed-requests: 'x' is not a whole number"),
    ("run --max-failed-requests 1.5", "--max-failed-requests: '1.5' is not a whole number"),
    ("run --fault-duration abc", "--fault-duration 'abc'"),
    ("run --fault-duration -1", "--fault-duration must be a positive number"),
    ("run --fault-duration nan", "--fault-duration must be a positive number"),
    # run: a generated topology
    ("run --services 0", "--services must be from 1 to 200"),
    ("run --services x", "--services: 'x' is not a whole number"),
    ("run --services 1100", "--services must be from 1 to 200"),
    ("run --services 3 --topology TMP/topo.yaml", "give --topology FILE or --services N, not both"),
    ("run --replicas 0 --services 3", "--replicas must be from 1 to 50"),
    ("run --replicas 2", "--replicas and --depth shape a generated topology"),
    ("run --depth 0 --services 3", "--depth must be from 1 to 10"),
    ("run --depth 9 --services 3", "--depth 9 needs at least 10 services"),
    # run: the provider's options
    ("run --provider nope", "unknown provider 'nope'"),
    ("run --registry 'bad registry'", "--registry 'bad registry'"),
    ("run --registry 'x\ncommand: [sh]'", "--registry"),
    ("run --nodes 0", "--nodes 0: a cluster needs at least 1 node"),
    ("run --nodes abc", "--nodes 'abc'"),
    ("run --nodes 999", "--nodes 999: this machine"),
    ("run --results /dev/null/x", "cannot write results to /dev/null/x"),
    # topology files
    ("run --topology TMP/none.yaml", "cannot read topology"),
    ("run --topology TMP/bad.yaml", "not valid YAML at line 2"),
    ("run --topology TMP/latin.yaml", "not UTF-8 text"),
    ("run --topology /dev/zero", "topology /dev/zero is larger than"),
    ("run --topology TMP", "cannot read topology"),
    ("run --topology TMP/list.json", "expected a mapping with services"),
    ("run --topology TMP/noservices.yaml", "services: at least one service is needed"),
    ("run --topology TMP/unknown-call.yaml", "nobody"),
    ("run --topology TMP/cycle.yaml", "cycle"),
    ("run --topology TMP/twice.yaml", "services.a: duplicate service name"),
    ("run --topology TMP/upper.yaml", "Front"),
    ("run --topology TMP/newline.yaml", "name"),
    ("run --topology TMP/replicas0.yaml", "replicas"),
    ("run --topology TMP/replicas-x.yaml", "replicas"),
    ("run --topology TMP/no-entry.yaml", "entry"),
    ("run --topology TMP/colour.yaml", "colour"),
    ("run --topology TMP/agents-x.yaml", "mesh"),
    ("run --topology TMP/extra-agents.yaml", "extra_agents"),
    ("run --topology TMP/alias-bomb.yaml", "alias"),
    ("run --topology TMP/long-chain.yaml", "services: at most 200 services, got 1100"),  # was a RecursionError
    ("deploy --pattern sidecar --topology TMP/bad.yaml", "not valid YAML"),
    ("deploy --pattern nope", "--pattern: unknown pattern"),
    ("deploy --pattern sidecar --extra-agents -1", "extra_agents: -1 is outside 0..20"),
    ("deploy --pattern sidecar --extra-agents x", "--extra-agents: invalid int value"),
    ("deploy --pattern sidecar --services 0", "--services must be from 1 to 200"),
    # agent files as files
    ("run --agent-file TMP/none.yaml", "cannot read agent file"),
    ("run --agent-file /dev/zero", "agent file /dev/zero is larger than"),
    ("run --agent-file TMP/latin.yaml", "not UTF-8 text"),
    ("run --agent-file TMP/alias-bomb.yaml", "alias"),
    # scale
    ("scale --services 3", "--services: at least three sizes"),
    ("scale --services 3,x,9", "--services: 'x' is not a whole number"),
    ("scale --services 9,6,3", "--services: give the sizes rising"),
    ("scale --services 0,3,6", "--services must be from 1 to 200"),
    ("scale --services 3,6,9 --depth 5", "--depth 5 needs at least 6 services"),
    ("scale --nodes 2,4", "--nodes: at least three sizes"),
    ("scale --nodes 4,3,2", "--nodes: give the sizes rising"),
    ("scale --nodes 2,3,999", "--nodes must be from 1 to 200"),
    ("scale --nodes-services x", "--nodes-services: 'x' is not a whole number"),
    ("scale --pattern nope", "--pattern: unknown pattern"),
    ("scale --profile huge", "--profile: unknown profile"),
    ("scale --duration nan", "--duration: nan is not a finite number"),
    # calibrate
    ("calibrate --target moon", "--target: invalid choice"),
    ("calibrate --kinds nope", "--kinds: unknown outage kind"),
    ("calibrate --lengths abc", "--lengths: 'abc' is not a number"),
    ("calibrate --lengths -1", "--lengths: -1 s is outside"),
    ("calibrate --lengths 0", "--lengths: 0 s is outside"),
    ("calibrate --slo-ms x", "--slo-ms: 'x' is not a number"),
    # run directories, baselines
    ("report TMP/none", "is not a run directory"),
    ("report TMP/norun", "holds no experiment case"),
    ("report TMP/norun --slo-ms x", "--slo-ms: 'x' is not a number"),
    ("compare TMP/none TMP/norun", "cannot read baseline"),
    ("compare TMP/list.json TMP/norun", "holds a JSON list, not an object"),
    ("compare TMP/trunc.json TMP/norun", "is not valid JSON"),
    ("compare /dev/zero TMP/norun", "baseline /dev/zero is larger than"),
    ("baseline update TMP/none", "has no summary.json"),
    ("baseline update TMP/norun", "has no summary.json"),
    # the rest of the CLI
    ("undeploy --run-id 'bad id!'", "--run-id 'bad id!'"),
    ("cluster up --provider nope", "unknown provider 'nope'"),
    ("cluster up --nodes 0", "--nodes 0"),
    ("cluster up --nodes 999", "--nodes 999: this machine"),
    # where the load runs (issue 23)
    ("run --load-from moon", "--load-from 'moon': choose one of host, cluster"),
    ("run --load-from cluster --load-workers 0", "--load-workers 0: the in-cluster load needs 1..32"),
    ("run --load-from cluster --load-workers two", "--load-workers 'two'"),
    ("run --load-from cluster --load-workers 99", "--load-workers 99"),
    ("run --load-workers 2", "--load-workers counts worker pods: it needs --load-from cluster"),
    ("run --provider kind --load-nodes 1", "--load-nodes is for the local provider"),
    ("run --load-from cluster --sweep 100,200", "--sweep drives its rates from this machine"),
    ("calibrate --load-from cluster", "--load-from is for calibrate --target cluster"),
    ("scale --load-from moon", "--load-from 'moon'"),
    ("scale --load-workers 3", "--load-workers counts worker pods"),
    ("calibrate --target cluster --load-from moon", "--load-from 'moon'"),
    ("cluster up --load-nodes -1", "--load-nodes -1: cannot be negative"),
    # what the load sends (issue 24)
    ("run --workload bogus", "--workload: unknown workload 'bogus' (choose one of http, grpc-unary, grpc-stream)"),
    ("run --workload grpc-stream --pattern ambient", "--workload grpc-stream with --pattern ambient: its waypoint proxies carry HTTP/1.1 only"),
    ("run --workload grpc-unary --load-from cluster", "--workload grpc-unary runs its gRPC clients on this machine for now"),
    ("run --workload grpc-unary --sweep 100,200", "--sweep sends HTTP/1.1 at rising rates"),
    ("cluster up --load-nodes x", "--load-nodes 'x'"),
    ("cluster up --nodes 3 --load-nodes 999", "with --load-nodes 999: this machine holds at most"),
]


def write_files(root: Path) -> None:
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def assert_one_line_exit_2(argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own refusals (a type or a choice) exit from parse_args
        code = exc.code
    assert code == 2, argv
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert words in err, f"{argv}: {err!r} does not say {words!r}"


def test_the_table_holds_at_least_80_bad_inputs() -> None:
    assert len(ROWS) + len(AGENT_FILES) >= 80
    assert len({argv for argv, _ in ROWS}) == len(ROWS)


@pytest.mark.parametrize("args,words", ROWS, ids=[a for a, _ in ROWS])
def test_a_bad_input_is_one_line_and_exit_2_before_any_cluster(args: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_provider: None) -> None:
    files, results = tmp_path / "files", tmp_path / "results"
    write_files(files)
    results.mkdir()
    before = snapshot(tmp_path)
    argv = [a.replace("TMP", str(files)) for a in shlex.split(args)]
    if argv[0] in ("run", "scale", "calibrate", "deploy") and "--results" not in argv:
        argv += ["--results", str(results)]
    assert_one_line_exit_2(argv, words, capsys)
    assert snapshot(tmp_path) == before, "a refused input left something behind"


def test_a_truncated_case_is_reported_incomplete_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What a kill leaves (case.json cut short): the report is written with the case marked;
    the exit is 1, as for any claim that cannot be checked."""
    write_files(tmp_path)
    assert cli.main(["report", str(tmp_path / "run")]) == 1
    assert "Traceback" not in capsys.readouterr().err
    report = (tmp_path / "run" / "report.md").read_text()
    assert "the case is incomplete" in report and "case.json (not valid JSON)" in report


@pytest.mark.parametrize("doc,words", [(d, m) for _, d, m in AGENT_FILES], ids=[i for i, _, _ in AGENT_FILES])
def test_a_bad_agent_file_is_one_line_and_exit_2_before_any_cluster(doc: object, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_provider: None) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    (tmp_path / "results").mkdir()
    before = snapshot(tmp_path)
    assert_one_line_exit_2(["run", "--agent-file", str(path), "--results", str(tmp_path / "results")], words, capsys)
    assert snapshot(tmp_path) == before, "a refused agent file left something behind"
