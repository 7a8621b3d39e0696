"""The faults an experiment can inject, defined once: what each does, what it needs, and the
checks that refuse a fault a case cannot run before anything is deployed.

The mechanisms live with the providers (a typed ability, `FaultInjector`); this module only
says what a fault is.
"""

from __future__ import annotations

from dataclasses import dataclass

from patternbench.agents import AGENTS
from patternbench.errors import UsageError
from patternbench.patterns import PATTERNS, Pattern, pattern_spec


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


# The mechanisms a fault is made of. A provider offers some (FaultInjector.fault_mechanisms)
# and knows no fault by name; the API's are made through the Kubernetes API by fault_driver,
# so every provider that injects faults at all offers them.
PROVIDER_MECHANISMS = frozenset({"kill", "freeze", "stop-apiserver"})
API_MECHANISMS = frozenset({"scale-to-zero"})
MECHANISMS = PROVIDER_MECHANISMS | API_MECHANISMS

FAULTS: dict[str, FaultSpec] = {
    spec.name: spec
    for spec in (
        FaultSpec("agent-kill", "SIGKILL of one agent instance (one pod's sidecar, or one node's agent); the kubelet restarts it", "agent", False, False),
        FaultSpec("agent-hang", "one agent instance frozen (SIGSTOP) for the fault's duration, then let go (SIGCONT), unless its liveness probe has it restarted first", "agent", False, True, 8.0, "freeze"),
        FaultSpec("apiserver-down", "the API server stopped for the fault's duration during steady load, then started again", "apiserver", False, True, 10.0, "stop-apiserver"),
        FaultSpec("apiserver-down-during-upgrade", "the API server stopped for the fault's duration in the middle of the agent's rollout", "apiserver", True, True, 5.0, "stop-apiserver"),
        FaultSpec("agent-kill-during-upgrade", "SIGKILL of a new node agent while its DaemonSet rolls", "agent", True, False),
        # The webhook's own failure while a webhook-injected sidecar rolls: down (no endpoints,
        # refused at once) and hung (each admission call waits out the webhook's timeout until
        # the readiness probe takes the frozen pods out of the Service).
        FaultSpec("injector-down-during-upgrade", "the sidecar injector scaled to 0 for the fault's duration, just after the app Deployments were restarted onto the new template (failurePolicy Fail)", "injector", True, True, 10.0, "scale-to-zero"),
        FaultSpec("injector-hung-during-upgrade", "every sidecar injector pod frozen (SIGSTOP) for the fault's duration, just after the app Deployments were restarted onto the new template", "injector", True, True, 8.0, "freeze"),
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
    if spec.name == "agent-kill-during-upgrade" and agent is not None and not runs_on_nodes(pattern, agent):
        raise UsageError(f"--fault {name} kills a node agent during its DaemonSet rollout: the {pattern.value} pattern runs the {agent} agent per pod")
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
