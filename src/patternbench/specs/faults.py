"""The faults an experiment can inject, each defined once (FaultSpec): what it does and
targets, the mechanism it needs, the cases it applies to, what it claims and its report
section; and the checks that refuse a fault a case cannot run before anything is deployed.

The mechanisms live with the providers (a typed ability, `FaultInjector`), which know no
fault by name; the summary, the matrix and the report read a fault's fields, never its name.

Adding a fault: one FaultSpec in FAULTS (and a test of its claims).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from patternbench.errors import UsageError
from patternbench.results.report_format import fmt, pick_case
from patternbench.results.verdicts import Thresholds, causes_text, charged_failures
from patternbench.specs.agents import AGENTS, AgentKind, agent_spec
from patternbench.specs.patterns import PATTERNS, Pattern, pattern_spec

Entry = dict[str, Any]
# (summary entry, its fault record, thresholds) -> the claims that did not hold
Claims = Callable[[Entry, Entry, Thresholds], list[str]]
# (summary cases) -> the report lines of the fault's own section
Section = Callable[[dict[str, Entry]], list[str]]


@dataclass(frozen=True)
class FaultSpec:
    """One kind of fault."""

    name: str
    what: str  # one line for the report
    target: str  # "agent": one agent instance; "apiserver": the control plane; "injector": the sidecar injector
    during_upgrade: bool  # injected while the agent's rollout runs
    timed: bool  # lasts `duration` (a hang, an outage); else an instant (a kill)
    default_duration_s: float = 0.0
    action: str = "kill"  # the mechanism: one of MECHANISMS
    # The cases it applies to (beyond its target). Only where the agent runs per node: a hard
    # requirement, refused when chosen; the text says why. Only agents on the request path:
    # the matrix's choice (it may still be chosen for another agent).
    node_agents_only: str | None = None
    request_path_only: bool = False
    claims: Claims | None = None  # what the model says it may cost, beyond any fault's bound
    note: str | None = None  # a paragraph under the blast-radius table when the run injected it
    section: Section | None = None  # a report section of its own

    def applies(self, pattern: Pattern, agent: str) -> bool:
        """Whether the fault matrix runs it on this pattern's agent."""
        if self.node_agents_only and not runs_on_nodes(pattern, agent):
            return False
        return not (self.request_path_only and not agent_spec(agent).on_request_path)


# The mechanisms a fault is made of. A provider offers some (FaultInjector.fault_mechanisms)
# and knows no fault by name; the API's are made through the Kubernetes API by fault_driver,
# so every provider that injects faults at all offers them.
PROVIDER_MECHANISMS = frozenset({"kill", "freeze", "stop-apiserver"})
API_MECHANISMS = frozenset({"scale-to-zero"})
MECHANISMS = PROVIDER_MECHANISMS | API_MECHANISMS

# ---- what each fault claims, and its report section -----------------------------------------


def log_agent_kill_claims(entry: Entry, fault: Entry, thresholds: Thresholds) -> list[str]:
    """A log agent is not on the request path: killing it fails no request, and a node log
    agent resumes from its checkpoint: no line lost. It checkpoints after the sink took a
    batch, so a kill between the sink's answer and the checkpoint repeats that batch
    (at-least-once): no more lines repeated than the largest batch the sink received."""
    kind, agent = fault["kind"], entry.get("agent")
    if not agent or agent_spec(agent).kind is not AgentKind.LOG:
        return []
    out = []
    if fault["failed_in_window"] > thresholds.max_failed_requests:
        out.append(f"{kind} of a log agent failed {fault['failed_in_window']} requests")
    node_agent = pattern_spec(entry["pattern"]).runs_on_nodes(agent)
    if node_agent and (entry.get("log_lines_lost") or 0) > thresholds.max_log_lines_lost:
        out.append(f"{kind} of a node log agent lost {entry.get('log_lines_lost')} log lines")
    # Sidecar and node log agents both resume from a checkpoint: at most one batch again.
    repeated, batch = entry.get("log_lines_duplicated") or 0, entry.get("log_max_batch_lines") or 0
    if repeated > batch:
        where = "node" if node_agent else "sidecar"
        out.append(f"{kind} of a {where} log agent repeated {repeated} log lines, more than one batch ({batch})")
    return out


def steady_apiserver_claims(entry: Entry, fault: Entry, thresholds: Thresholds) -> list[str]:
    """The mesh keeps routing with the endpoints it knows while the API server is down: a
    steady-state outage fails no request."""
    if charged_failures(entry) > thresholds.max_failed_requests:
        return [f"{charged_failures(entry)} requests failed while the API server was down (threshold {thresholds.max_failed_requests}; {causes_text(entry)})"]
    return []


def injector_claims(entry: Entry, fault: Entry, thresholds: Thresholds) -> list[str]:
    """failurePolicy Fail: while the injector cannot answer, no app pod is admitted (with or
    without its sidecar) and the rollout waits; maxUnavailable 0 keeps the old pods serving."""
    kind = fault["kind"]
    out = []
    if not fault.get("pod_creations_refused"):
        out.append(f"{kind}: no pod creation was refused (the fault missed the rollout, or no refusal event was recorded)")
    if fault.get("app_pods_created_during_fault"):
        out.append(f"{kind}: {fault['app_pods_created_during_fault']} app pods were created while the injector was unavailable")
    if fault.get("app_pods_without_sidecar"):
        out.append(f"{kind}: app pods ran without the sidecar: {', '.join(fault['app_pods_without_sidecar'])}")
    if charged_failures(entry) > thresholds.max_failed_requests:
        out.append(f"{kind}: {charged_failures(entry)} requests failed while a stalled rollout kept its old pods (threshold {thresholds.max_failed_requests}; {causes_text(entry)})")
    return out


HANG_NOTE = (
    "A hung mesh proxy (alive, answering nothing) is taken out of its Service by its readiness probe (1 s period) "
    "and restarted by its liveness probe after 3 missed probes 2 s apart (about 6 s); the log agent has no probe, "
    "so a hung log agent stays hung until it is let go."
)


def _injector_section(cases: dict[str, Any]) -> list[str]:
    """What an unavailable injector does to pod creation during a webhook-injected rollout,
    beside the same rollout without the fault; empty when the run injected no such fault."""
    faulted = {n: e for n, e in cases.items() if e.get("fault") and FAULTS[e["fault"]["kind"]].target == "injector"}
    if not faulted:
        return []
    out = ["## When the injector fails during a rollout", "",
           "The webhook's failurePolicy is Fail, so while the injector cannot answer the API server refuses every app pod "
           "(none is admitted without its sidecar) and the Deployments wait; their maxUnavailable 0 keeps the old pods serving. "
           "Refusals are the controllers' FailedCreate events (a floor: the event recorder folds and rate-limits them); pods "
           "created and pods without the sidecar come from the pod watch.", "",
           "| case | fault | creations refused (at least) | app pods created while unavailable | app pods without the sidecar | rollout s | same rollout without the fault s | failed requests | downtime s |",
           "|---|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for name, e in faulted.items():
        f = e["fault"]
        plain = pick_case(cases, e["pattern"], e["agent"], e["naive"], e.get("upgrade_strategy") or "rolling", "webhook")
        base = plain["upgrade_duration_s"] if plain else None
        without = f.get("app_pods_without_sidecar")
        out.append(f"| {name} | {f['kind']} ({fmt(f.get('duration_s'), 0)} s) | {fmt(f.get('pod_creations_refused'))} | {fmt(f.get('app_pods_created_during_fault'))} "
                   f"| {len(without) if without is not None else '–'} | {fmt(e['upgrade_duration_s'])} | {fmt(base)} | {e['failed_requests']} | {fmt(e['downtime_s'])} |")
        stall = f", {fmt(e['upgrade_duration_s'] - base)} s longer than without it" if base is not None and e["upgrade_duration_s"] is not None else ""
        verdicts.append(f"- {f['kind']}: {fmt(f.get('pod_creations_refused'))} pod creations refused, {fmt(f.get('app_pods_created_during_fault'))} admitted "
                        f"while it lasted; the rollout took {fmt(e['upgrade_duration_s'])} s{stall}; {e['failed_requests']} requests failed.")
    return out + ["", *verdicts, ""]


FAULTS: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        FaultSpec("agent-kill", "SIGKILL of one agent instance (one pod's sidecar, or one node's agent); the kubelet restarts it", "agent", False, False,
                  claims=log_agent_kill_claims),
        # A frozen log agent only delays lines (the checkpoint is covered by a kill): the matrix hangs proxies.
        FaultSpec("agent-hang", "one agent instance frozen (SIGSTOP) for the fault's duration, then let go (SIGCONT), unless its liveness probe has it restarted first", "agent", False, True, 8.0, "freeze",
                  request_path_only=True, note=HANG_NOTE),
        FaultSpec("apiserver-down", "the API server stopped for the fault's duration during steady load, then started again", "apiserver", False, True, 10.0, "stop-apiserver",
                  claims=steady_apiserver_claims),
        FaultSpec("apiserver-down-during-upgrade", "the API server stopped for the fault's duration in the middle of the agent's rollout", "apiserver", True, True, 5.0, "stop-apiserver"),
        FaultSpec("agent-kill-during-upgrade", "SIGKILL of a new node agent while its DaemonSet rolls", "agent", True, False,
                  node_agents_only="kills a node agent during its DaemonSet rollout", claims=log_agent_kill_claims),
        # The webhook's own failure while a webhook-injected sidecar rolls: down (no endpoints,
        # refused at once) and hung (each admission call waits out the webhook's timeout until
        # the readiness probe takes the frozen pods out of the Service).
        FaultSpec("injector-down-during-upgrade", "the sidecar injector scaled to 0 for the fault's duration, just after the app Deployments were restarted onto the new template (failurePolicy Fail)", "injector", True, True, 10.0, "scale-to-zero",
                  claims=injector_claims, section=_injector_section),
        FaultSpec("injector-hung-during-upgrade", "every sidecar injector pod frozen (SIGSTOP) for the fault's duration, just after the app Deployments were restarted onto the new template", "injector", True, True, 8.0, "freeze",
                  claims=injector_claims, section=_injector_section),
    )
}


assert all(f.action in MECHANISMS for f in FAULTS.values()), "a fault names an unknown mechanism"


def injectable(provider_mechanisms: frozenset[str]) -> frozenset[str]:
    """The faults a provider that offers these mechanisms can inject (the API's added)."""
    unknown = provider_mechanisms - PROVIDER_MECHANISMS
    if unknown:
        raise ValueError(f"unknown fault mechanism(s) {sorted(unknown)}; known: {sorted(PROVIDER_MECHANISMS)}")
    offered = provider_mechanisms | API_MECHANISMS
    return frozenset(name for name, f in FAULTS.items() if f.action in offered)


def fault_spec(name: str) -> FaultSpec:
    spec = FAULTS.get(name)
    if spec is None:
        raise UsageError(f"--fault: unknown fault {name!r} (choose one of {', '.join(FAULTS)})")
    return spec


def runs_on_nodes(pattern: Pattern, agent: str) -> bool:
    """Whether the pattern runs this agent once per node (a DaemonSet) rather than per pod."""
    return pattern_spec(pattern).runs_on_nodes(agent)


def check_fault(
    name: str, pattern: Pattern, agent: str | None, supported: frozenset[str], provider: str, injection: str = "client",
) -> FaultSpec:
    """The fault if this case can run it; a one-line UsageError naming why not otherwise."""
    spec = fault_spec(name)
    if spec.name not in supported:
        raise UsageError(f"--fault {name}: the {provider} provider cannot inject it (it can: {', '.join(sorted(supported)) or 'none'})")
    if spec.target == "injector":
        fault_injection(spec, injection)
    if spec.target == "agent" or spec.during_upgrade:
        runs_agents = [p.value for p, s in PATTERNS.items() if s.placement]
        if agent is None or not pattern_spec(pattern).placement:
            raise UsageError(f"--fault {name} needs an agent, and the {pattern.value} pattern runs none: choose --pattern {', '.join(runs_agents[:-1])} or {runs_agents[-1]}")
        if agent not in AGENTS:
            raise UsageError(f"--fault {name}: unknown agent {agent!r}")
        if not pattern_spec(pattern).runs(agent):
            raise UsageError(f"--fault {name}: the {pattern.value} pattern does not run the {agent} agent")
    if spec.node_agents_only and agent is not None and not runs_on_nodes(pattern, agent):
        raise UsageError(f"--fault {name} {spec.node_agents_only}: the {pattern.value} pattern runs the {agent} agent per pod")
    if spec.target == "injector" and agent is not None and runs_on_nodes(pattern, agent):
        raise UsageError(f"--fault {name}: the {pattern.value} pattern runs the {agent} agent per node, so the injector plays no part in its upgrade")
    return spec


def fault_injection(spec: FaultSpec, injection: str | None) -> str:
    """How the fault's cases inject sidecars: the injector's faults need the webhook (their
    default); the others keep the client-side render."""
    if spec.target != "injector":
        return "client"
    if injection not in (None, "webhook"):
        raise UsageError(f"--fault {spec.name} hits the sidecar injector: run it with --injection webhook")
    return "webhook"


def parse_duration(raw: object) -> float:
    """--fault-duration: a positive number of seconds; a one-line UsageError otherwise."""
    try:
        value = float(str(raw))
    except ValueError:
        raise UsageError(f"--fault-duration {raw!r}: give a number of seconds") from None
    if not value > 0 or value != value or value == float("inf"):
        raise UsageError(f"--fault-duration must be a positive number of seconds, got {raw}")
    return value
