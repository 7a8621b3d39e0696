"""What runs each upgrade on a cluster, one entry per strategy and injection mode (UPGRADES),
instead of an if-chain in the case runner. Each marks the timeline's upgrade_end with what it
changed. The strategies themselves are declared in strategies.py."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from kubernetes import client

from patternbench.errors import UsageError
from patternbench.operate.inplace import upgrade_in_place
from patternbench.operate.kube import Deployer
from patternbench.operate.upgrade import rollout_recorder, upgrade_agent, upgrade_targets
from patternbench.operate.webhook_injector import restart_deployments, switch_template
from patternbench.progress import Progress
from patternbench.render.injector_objects import injection_template
from patternbench.results.rundir import ROLLOUTS
from patternbench.specs.agents import upgradable_spec
from patternbench.specs.cases import Case, Profile
from patternbench.specs.topology import Topology


@dataclass
class UpgradeJob:
    """One case's upgrade: where it runs and how it reports."""

    api: client.ApiClient
    topology: Topology
    case: Case
    run: Any  # deploy.DeployedRun
    profile: Profile
    out_dir: Path
    mark: Callable[..., Any]  # the case's Timeline.mark
    # Set once the pods are being replaced (what an injector fault waits for).
    started: threading.Event | None = None
    to_version: str = "v2"  # a trial on a shared deployment may roll the agent back to v1

    @property
    def agent(self) -> str:
        assert self.case.agent is not None, "the control case upgrades nothing"
        return self.case.agent

    @property
    def rollouts_log(self) -> Path:
        return self.out_dir / ROLLOUTS


def rolling(job: UpgradeJob) -> None:
    """Every workload that runs the agent gets the new image in its template; kubectl's rollout rules."""
    result = upgrade_agent(job.api, job.run.objects, job.agent, version=job.to_version, timeout_s=job.profile.upgrade_timeout_s, progress_log=job.rollouts_log)
    job.mark("upgrade_end", targets=[asdict(t) for t in result.targets])


def in_place(job: UpgradeJob) -> None:
    """Each running pod's sidecar image patched, one pod at a time, drained first unless naive."""
    targets = upgrade_targets(job.run.objects, job.agent)
    image = upgradable_spec(job.agent).image_for("v2", targets[0].image)
    pods = upgrade_in_place(job.api, job.run.app_namespace, job.agent, image, drain=not job.case.naive, progress_log=job.rollouts_log)
    job.mark("upgrade_end", targets=[asdict(t) for t in targets], pods=[asdict(p) for p in pods])


def _switch_template(job: UpgradeJob) -> dict[str, Any]:
    """The injector's template to v2: every pod created from now on gets the new sidecar."""
    template = injection_template(job.topology, job.case.pattern, job.run.render_options, "v2", upgraded=[job.agent])
    switch_template(job.api, job.run.agents_namespace, template)
    job.mark("template_switched", version="v2")
    return template


def webhook_rolling(job: UpgradeJob) -> None:
    """The template switched, then every app Deployment restarted (as Istio upgrades)."""
    _switch_template(job)
    apps = [o for o in job.run.objects if o["kind"] == "Deployment" and o["metadata"]["namespace"] == job.run.app_namespace]
    restart_deployments(job.api, apps)
    job.mark("deployments_restarted", deployments=[d["metadata"]["name"] for d in apps])
    if job.started is not None:
        job.started.set()
    deployer = Deployer(job.api, Progress(quiet=True))
    record = rollout_recorder(job.rollouts_log)
    for d in apps:
        deployer.wait_one("Deployment", d["metadata"]["namespace"], d["metadata"]["name"], job.profile.upgrade_timeout_s, on_status=record)
    job.mark("upgrade_end", restarted=[d["metadata"]["name"] for d in apps])


def webhook_in_place(job: UpgradeJob) -> None:
    """The template switched, then every running pod's sidecar patched in place (SidecarSet-style)."""
    template = _switch_template(job)
    container = upgradable_spec(job.agent).container
    image = next(c["image"] for c in template["initContainers"] if c["name"] == container)
    if job.started is not None:
        job.started.set()
    pods = upgrade_in_place(job.api, job.run.app_namespace, job.agent, image, drain=not job.case.naive, progress_log=job.rollouts_log)
    job.mark("upgrade_end", pods=[asdict(p) for p in pods])


# (strategy, injection) -> what runs it.
UPGRADES: dict[tuple[str, str], Callable[[UpgradeJob], None]] = {
    ("rolling", "client"): rolling,
    ("in-place", "client"): in_place,
    ("rolling", "webhook"): webhook_rolling,
    ("in-place", "webhook"): webhook_in_place,
}


def run_upgrade(job: UpgradeJob) -> None:
    """The case's upgrade, by its strategy and injection mode."""
    run = UPGRADES.get((job.case.upgrade, job.case.injection))
    if run is None:
        raise UsageError(f"no upgrade runs strategy {job.case.upgrade!r} with {job.case.injection!r} injection")
    if job.to_version != "v2" and not job.case.shares_deployment:
        raise UsageError(f"{job.case.id} deploys fresh each trial: it only upgrades v1 -> v2")
    run(job)
