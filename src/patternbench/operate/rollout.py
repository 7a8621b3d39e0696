"""When a rollout is done: kubectl's rules (pkg/polymorphichelpers/rollout_status.go), as
pure functions over the objects' dicts, so they can be unit-tested on synthetic statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from patternbench.errors import UsageError


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str


def deployment_status(obj: dict[str, Any]) -> RolloutStatus:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    name = meta.get("name", "?")
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return RolloutStatus(False, "Waiting for deployment spec update to be observed...")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise UsageError(f"deployment {name!r} exceeded its progress deadline")
    desired = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < desired:
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: {updated} out of {desired} new replicas have been updated...')
    replicas = status.get("replicas", 0)
    if replicas > updated:
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old replicas are pending termination...')
    available = status.get("availableReplicas", 0)
    if available < updated:
        return RolloutStatus(False, f'Waiting for deployment "{name}" rollout to finish: {available} of {updated} updated replicas are available...')
    return RolloutStatus(True, f'deployment "{name}" successfully rolled out')


def daemonset_status(obj: dict[str, Any]) -> RolloutStatus:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    name = meta.get("name", "?")
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        raise UsageError(f"daemonset {name!r}: rollout status is only available for the RollingUpdate strategy")
    if meta.get("generation", 0) > status.get("observedGeneration", 0):
        return RolloutStatus(False, "Waiting for daemon set spec update to be observed...")
    desired = status.get("desiredNumberScheduled", 0)
    updated = status.get("updatedNumberScheduled", 0)
    if updated < desired:
        return RolloutStatus(False, f'Waiting for daemon set "{name}" rollout to finish: {updated} out of {desired} new pods have been updated...')
    available = status.get("numberAvailable", 0)
    if available < desired:
        return RolloutStatus(False, f'Waiting for daemon set "{name}" rollout to finish: {available} of {desired} updated pods are available...')
    return RolloutStatus(True, f'daemon set "{name}" successfully rolled out')


def rollout_status(obj: dict[str, Any]) -> RolloutStatus:
    kind = obj.get("kind")
    if kind == "Deployment":
        return deployment_status(obj)
    if kind == "DaemonSet":
        return daemonset_status(obj)
    raise ValueError(f"no rollout status for kind {kind}")
