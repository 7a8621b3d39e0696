"""Every figure a run reports over trials and baselines, declared once.

A figure says where one trial's summary entry holds it, its unit, whether it gets a 95 %
bootstrap interval over the trials (`<name>_ci95`, and so a sidecar-vs-DaemonSet
difference), whether nightly baselines track it (under which name, with which tolerance;
lower is better for every baselined figure), and where the report shows it. `trials`,
`baseline` (and so `compare`) and the report read this table; no second list exists.
Adding a figure is one `Figure(...)` here plus the measurement that writes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Entry = dict[str, Any]


@dataclass(frozen=True)
class Tolerance:
    """How much worse than its baseline a figure may be and still not be a regression:
    limit = baseline × (1 + relative) + absolute."""

    absolute: float
    relative: float


@dataclass(frozen=True)
class Figure:
    name: str  # its key in summary.json (and `<name>_ci95` for its interval)
    unit: str
    path: tuple[str, ...]  # the keys that lead to it in one case's entry
    interval: bool = False  # a 95 % interval over trials and a sidecar-vs-DaemonSet difference
    baseline: str | None = None  # the name nightly baselines track it under
    tolerance: Tolerance | None = None  # the baseline's default tolerance
    column: str | None = None  # its column in the report's repeated-trials table (shared: "a / b")
    plotted: bool = False  # in intervals.png
    # The article's claim it answers in the report's opening verdict (CLAIMS), if any.
    claim: str | None = None

    def __post_init__(self) -> None:
        if self.baseline is not None and self.tolerance is None:
            raise ValueError(f"figure {self.name}: a baselined figure needs its tolerance")
        if self.claim is not None and self.claim not in CLAIMS:
            raise ValueError(f"figure {self.name}: unknown claim {self.claim!r} (known: {', '.join(CLAIMS)})")
        if self.claim is not None and not self.interval:
            raise ValueError(f"figure {self.name}: a figure that answers a claim needs its interval")

    def of(self, entry: Entry) -> Any:
        """Its value in one entry as recorded (None when the entry lacks it)."""
        value: Any = entry
        for key in self.path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value


_DOWNTIME = "error / slow downtime s"

# The article's three claims, in the order the report's verdict answers them.
CLAIMS = {
    "resources": "Resources: sidecars multiply the agents' containers, CPU and memory",
    "lifecycle": "Lifecycle: upgrading a sidecar recreates every app pod; a DaemonSet's touches none",
    "network": "Network distance: a sidecar is a loopback hop from its app, a node agent a network hop",
}

# Latency is the steady state, before the upgrade.
FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("downtime_s", "s", ("downtime_s",), interval=True, baseline="downtime_s", tolerance=Tolerance(0.2, 0.5),
           column="downtime s", plotted=True, claim="lifecycle"),
    Figure("error_downtime_s", "s", ("error_downtime_s",), interval=True, column=_DOWNTIME),
    Figure("slow_downtime_s", "s", ("slow_downtime_s",), interval=True, column=_DOWNTIME),
    Figure("failed_requests", "requests", ("failed_requests",), interval=True, baseline="failed_requests", tolerance=Tolerance(2, 0.5),
           column="failed requests", plotted=True, claim="lifecycle"),
    Figure("latency_p50_ms", "ms", ("latency_ms", "before", "p50"), interval=True, column="p50 ms before", plotted=True, claim="network"),
    Figure("latency_p99_ms", "ms", ("latency_ms", "before", "p99"), interval=True, baseline="latency_p99_ms", tolerance=Tolerance(5.0, 0.5),
           column="p99 ms before", plotted=True, claim="network"),
    Figure("agent_cpu_m_total", "millicores", ("agent_cpu_m_total",), interval=True, column="agent CPU m", plotted=True, claim="resources"),
    Figure("agent_memory_mib_total", "MiB", ("agent_memory_mib_total",), interval=True, baseline="agent_memory_mib",
           tolerance=Tolerance(8.0, 0.25), column="agent MiB", plotted=True, claim="resources"),
    Figure("agent_cpu_m_per_instance", "millicores", ("agent_cpu_m_per_instance",), interval=True),
    Figure("agent_memory_mib_per_instance", "MiB", ("agent_memory_mib_per_instance",), interval=True),
    # How old the agents were when sampled: memory rises through their first minute (resources.agent_age_s).
    Figure("agent_age_s", "s", ("agent_age_s",), interval=True),
    Figure("app_pods_recreated", "pods", ("app_pods_recreated",), interval=True, claim="lifecycle"),
    Figure("log_lines_lost", "lines", ("log_lines_lost",), baseline="log_lines_lost", tolerance=Tolerance(0, 0.0)),
    Figure("containers_total", "containers", ("containers_total",)),
    Figure("upgrade_duration_s", "s", ("upgrade_duration_s",)),
    Figure("app_pod_start_p50_s", "s", ("app_pod_start_s", "p50")),
    # The API server's side over the steady phase (measure/apiserver.py): a sidecar mesh
    # proxy watches EndpointSlices from every pod, a node proxy once per node.
    Figure("apiserver_endpointslice_watchers", "watches", ("apiserver", "watchers", "endpointslices"), interval=True),
    Figure("apiserver_endpointslice_events_per_s", "events/s", ("apiserver", "watch_events_per_s", "endpointslices"), interval=True),
    Figure("apiserver_cpu_cores", "cores", ("apiserver", "cpu_cores"), interval=True),
    Figure("apiserver_upgrade_endpointslice_events", "events", ("apiserver_upgrade", "watch_events", "endpointslices"), interval=True),
)}


def figure(name: str) -> Figure:
    """A figure by name; an unknown name is an error."""
    try:
        return FIGURES[name]
    except KeyError:
        raise KeyError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}") from None


def with_interval() -> list[Figure]:
    return [f for f in FIGURES.values() if f.interval]


def baselined() -> dict[str, Figure]:
    """Baseline name -> figure, in declaration order."""
    return {f.baseline: f for f in FIGURES.values() if f.baseline is not None}


def answering(claim: str) -> list[Figure]:
    """The figures that answer one of the CLAIMS, in declaration order."""
    if claim not in CLAIMS:
        raise KeyError(f"unknown claim {claim!r}; known: {', '.join(CLAIMS)}")
    return [f for f in FIGURES.values() if f.claim == claim]


def plotted() -> list[Figure]:
    return [f for f in FIGURES.values() if f.plotted]


def columns() -> dict[str, list[Figure]]:
    """The repeated-trials table's columns in order, each with the figures it shows."""
    out: dict[str, list[Figure]] = {}
    for f in FIGURES.values():
        if f.column is not None:
            out.setdefault(f.column, []).append(f)
    return out
