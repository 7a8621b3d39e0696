"""Where the load runs (issue 23): on the harness's machine (`host`) or as pods in the
cluster (`cluster`), and the nodes set aside for those pods. Defined once: the flag's values,
the load node's label and taint, and the check that a cluster has load nodes and app nodes
before anything is deployed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from patternbench.errors import UsageError

if TYPE_CHECKING:  # the load's own processes import this module without the client
    from kubernetes import client

LOAD_FROM = ("host", "cluster")
# A node for the load only: labelled so the load's pods select it, tainted so nothing else
# (app pods, node agents' DaemonSets, CoreDNS) lands there.
LOAD_NODE_LABEL = "patternbench.dev/load-node"
LOAD_NODE_VALUE = "true"
LOAD_NODE_TAINT_EFFECT = "NoSchedule"
MAX_LOAD_WORKERS = 32


def parse_load_from(raw: object, flag: str = "--load-from") -> str:
    if raw not in LOAD_FROM:
        raise UsageError(f"{flag} {raw!r}: choose one of {', '.join(LOAD_FROM)}")
    return str(raw)


def parse_load_workers(raw: object, flag: str = "--load-workers") -> int:
    try:
        count = int(str(raw).strip())
    except ValueError:
        raise UsageError(f"{flag} {raw!r}: give a whole number of worker pods (1..{MAX_LOAD_WORKERS})") from None
    if not 1 <= count <= MAX_LOAD_WORKERS:
        raise UsageError(f"{flag} {count}: the in-cluster load needs 1..{MAX_LOAD_WORKERS} worker pods")
    return count


def is_load_node(labels: dict[str, str] | None) -> bool:
    return (labels or {}).get(LOAD_NODE_LABEL) == LOAD_NODE_VALUE


def kubelet_flags() -> list[str]:
    """How a local node registers as a load node."""
    return [f"--node-labels={LOAD_NODE_LABEL}={LOAD_NODE_VALUE}", f"--register-with-taints={LOAD_NODE_LABEL}={LOAD_NODE_VALUE}:{LOAD_NODE_TAINT_EFFECT}"]


def pod_placement() -> dict[str, Any]:
    """The load pods' nodeSelector and toleration (V1PodSpec keyword arguments)."""
    from kubernetes import client

    return {
        "node_selector": {LOAD_NODE_LABEL: LOAD_NODE_VALUE},
        "tolerations": [client.V1Toleration(key=LOAD_NODE_LABEL, operator="Equal", value=LOAD_NODE_VALUE, effect=LOAD_NODE_TAINT_EFFECT)],
    }


def ready(node: client.V1Node) -> bool:
    """Ready and not cordoned: a node a new pod can be scheduled on."""
    return not (node.spec and node.spec.unschedulable) and any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))


def check_load_nodes(nodes: list[client.V1Node]) -> list[str]:
    """The Ready, schedulable load nodes' names; a one-line UsageError when there is none, or
    when no such node is left for the apps."""
    load = [n.metadata.name for n in nodes if ready(n) and is_load_node(n.metadata.labels)]
    apps = [n.metadata.name for n in nodes if ready(n) and not is_load_node(n.metadata.labels)]
    if not load:
        raise UsageError(
            f"--load-from cluster needs a Ready node labelled {LOAD_NODE_LABEL}={LOAD_NODE_VALUE} (and tainted "
            f"{LOAD_NODE_LABEL}={LOAD_NODE_VALUE}:{LOAD_NODE_TAINT_EFFECT}); none of the {len(nodes)} nodes is one "
            "(local: `patternbench cluster up --load-nodes 1`; elsewhere label a node pool so)"
        )
    if not apps:
        raise UsageError(f"every Ready node ({', '.join(load)}) is a load node: none is left for the apps")
    return load
