from __future__ import annotations

import pytest

from patternbench.errors import UsageError
from patternbench.operate.rollout import rollout_status


def deployment(gen=2, observed=2, replicas=3, updated=3, total=3, available=3, conditions=()):
    return {
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": gen},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, "updatedReplicas": updated, "replicas": total, "availableReplicas": available, "conditions": list(conditions)},
    }


def test_deployment_done_only_when_kubectl_would_say_so() -> None:
    assert rollout_status(deployment()).done
    assert "spec update to be observed" in rollout_status(deployment(gen=3)).message
    assert "1 out of 3 new replicas have been updated" in rollout_status(deployment(updated=1, total=4)).message
    assert "1 old replicas are pending termination" in rollout_status(deployment(total=4)).message
    assert "2 of 3 updated replicas are available" in rollout_status(deployment(available=2)).message
    assert not any(rollout_status(d).done for d in (deployment(gen=3), deployment(updated=2), deployment(total=4), deployment(available=2)))


def test_deployment_past_its_deadline_is_an_error() -> None:
    with pytest.raises(UsageError, match="progress deadline"):
        rollout_status(deployment(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]))


def daemonset(gen=1, observed=1, desired=2, updated=2, available=2, strategy="RollingUpdate"):
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "generation": gen},
        "spec": {"updateStrategy": {"type": strategy}},
        "status": {"observedGeneration": observed, "desiredNumberScheduled": desired, "updatedNumberScheduled": updated, "numberAvailable": available},
    }


def test_daemonset_rules() -> None:
    assert rollout_status(daemonset()).done
    assert "1 out of 2 new pods have been updated" in rollout_status(daemonset(updated=1)).message
    assert "1 of 2 updated pods are available" in rollout_status(daemonset(available=1)).message
    assert not rollout_status(daemonset(gen=2)).done
    with pytest.raises(UsageError, match="RollingUpdate"):
        rollout_status(daemonset(strategy="OnDelete"))


def test_a_fresh_object_without_status_is_not_done() -> None:
    obj = deployment()
    obj["status"] = None
    assert not rollout_status(obj).done
