"""The assembly of a run: render its objects for the cluster's provider, load its images,
apply them (with the webhook injector first when it injects), wait until the entry answers
and forget the host's stale bindings; DeployedRun is what the rest of a run uses.
"""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import config as kube_config

from patternbench.build.components import cache_root
from patternbench.build.images import ImageArchive, build_data_plane, on_demand_archives
from patternbench.build.load_image import cached_load_image
from patternbench.build.program_image import build_program_images
from patternbench.cluster.provider import abilities
from patternbench.errors import UsageError
from patternbench.load.conntrack import forget_unnated
from patternbench.operate.kube import REQUEST_TIMEOUT, Deployer, node_capacities, poll
from patternbench.operate.webhook_injector import redacted, wait_injecting
from patternbench.progress import Progress
from patternbench.render import Images, RenderOptions, render, to_yaml
from patternbench.render.injector_objects import injection_template, injector_objects, render_webhook
from patternbench.results.rundir import MANIFESTS
from patternbench.specs.agents import agent_spec
from patternbench.specs.patterns import pattern_spec
from patternbench.specs.topology import check_capacity

Obj = dict[str, Any]


def new_run_id(now: dt.datetime | None = None) -> str:
    """A DNS-label run id that sorts by time: pb-YYMMDD-HHMMSS-xxxx."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"pb-{now:%y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# ---- a whole run's deployment ------------------------------------------------------------


@dataclass
class DeployedRun:
    """What `deploy_run` made: enough to reach it, measure it and remove it."""

    run_id: str
    pattern: str
    objects: list[Obj]
    app_namespace: str
    agents_namespace: str
    entry_url: str
    nodes: int
    injection: str = "client"
    entry_service: str = ""  # the NodePort Service the load enters by
    render_options: Any = None  # the RenderOptions it was rendered with (webhook upgrades re-derive the template)
    # Bindings the readiness poll left un-NATed in this host's conntrack, deleted before any
    # load (conntrack.forget_unnated); each would have refused a later connection.
    forgotten_bindings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def namespaces(self) -> tuple[str, str]:
        """What the observers watch: the apps and the agents, not the load's pods."""
        return (self.app_namespace, self.agents_namespace)

    @property
    def load_namespace(self) -> str:
        return self.render_options.load_namespace

    def entry_in_cluster(self, core: Any) -> tuple[str, int]:
        """The entry Service's cluster address and port: where load from inside the cluster goes."""
        service = core.read_namespaced_service(self.entry_service, self.app_namespace, _request_timeout=REQUEST_TIMEOUT)
        return service.spec.cluster_ip, int(service.spec.ports[0].port)


# Providers (by object) this process has already loaded the images into.
_IMAGES_LOADED: set[Any] = set()


def forget_images(provider: object) -> None:
    """The provider's cluster was rebuilt (a resize): its nodes hold none of the images loaded
    before, so the next deploy loads them again."""
    for key in [k for k in _IMAGES_LOADED if k == id(provider) or (isinstance(k, tuple) and k[0] == id(provider))]:
        _IMAGES_LOADED.discard(key)


def deploy_run(
    provider: Any,
    topology: Any,
    pattern: Any,
    *,
    run_id: str | None = None,
    naive: bool = False,
    results_dir: Any = None,
    progress: Progress | None = None,
    timeout_s: float = 180,
    agent: str | None = None,
    serving_label: bool = False,
    injection: str = "client",
) -> DeployedRun:
    """Render, check, load images, apply and wait: the pattern's objects, rolled out and Ready."""

    progress = progress or Progress()

    pattern_spec(pattern).check(topology)
    run_id = run_id or new_run_id()
    able = abilities(provider)
    pod_logs_dir, agent_state_dir = able.node_paths
    images = Images.under(able.registry)
    # An agent from an agent file takes its built-in agent's place in this run.
    stand_ins = (agent,) if agent is not None and agent_spec(agent).stands_in_for else ()
    # The nodes first (a read): node agents' requests follow their count (render.size_agent_requests).
    try:
        api = kube_config.new_client_from_config(config_file=str(provider.kubeconfig()))
        deployer = Deployer(api, progress)
        nodes, running = node_capacities(deployer.core)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - an unreachable cluster is an environment problem
        raise UsageError(f"the {provider.name} cluster is not reachable (is it up? `patternbench cluster up`): {type(exc).__name__}") from None
    opts = RenderOptions(run_id=run_id, images=images, pod_logs_dir=pod_logs_dir, agent_state_dir=agent_state_dir, naive=naive, stand_ins=stand_ins, serving_label=serving_label, nodes=len(nodes))
    injector: list[Obj] = []
    if injection == "webhook":
        objs = render_webhook(topology, pattern, opts)
        injector = injector_objects(opts, injection_template(topology, pattern, opts, "v1"))
    else:
        objs = render(topology, pattern, opts)
    check_capacity(topology, pattern, nodes, used_pods=running)
    deployer.check_namespaces_free(objs, run_id)
    with progress.step("sweep earlier runs"):
        swept = deployer.sweep(keep_run=run_id)
    if swept:
        progress.say(f"   removed leftovers of {', '.join(swept)}")
    if provider.capabilities.can_load_images and id(provider) not in _IMAGES_LOADED:
        with progress.step("build and load images"):
            provider.load_images(build_data_plane())
        _IMAGES_LOADED.add(id(provider))
    # An agent file's images: its own OCI archives, images built from its packaged program,
    # or images patternbench builds on demand.
    own = [ImageArchive(ref=str(a), path=a, digest="", size_bytes=a.stat().st_size) for name in stand_ins for a in agent_spec(name).archives]
    programs = [f for name in stand_ins if (f := agent_spec(name).file) is not None and f.build is not None]
    refs = [ref for name in stand_ins for ref in (agent_spec(name).images_by_version or {}).values()]
    if provider.capabilities.can_load_images and (own or refs) and (id(provider), tuple(refs)) not in _IMAGES_LOADED:
        with progress.step(f"build and load the {', '.join(stand_ins)} agent's images"):
            archives = own + on_demand_archives(refs) + [a for f in programs for a in build_program_images(f.build, f.images)]
            if archives:
                provider.load_images(archives)
        _IMAGES_LOADED.add((id(provider), tuple(refs)))
    if results_dir is not None:
        out = Path(results_dir)
        out.mkdir(parents=True, exist_ok=True)

        (out / MANIFESTS).write_text(to_yaml(redacted(objs + injector)))
    if injector:
        apply_with_injector(deployer, objs, injector, opts.app_namespace, opts.agents_namespace, progress, timeout_s)
    else:
        with progress.step(f"apply {len(objs)} objects ({pattern.value} pattern, run {run_id})"):
            deployer.apply(objs)
    with progress.step("wait until every Deployment and DaemonSet is rolled out"):
        deployer.wait_rolled_out(objs, timeout_s)
    objs = objs + injector
    entry = next(o for o in objs if o["kind"] == "Service" and o["spec"].get("type") == "NodePort")
    live = deployer.core.read_namespaced_service(entry["metadata"]["name"], opts.app_namespace, _request_timeout=REQUEST_TIMEOUT)
    if able.entry_host is not None:
        host = able.entry_host
    else:  # a NodePort answers on every node's address
        node = deployer.core.read_node(nodes[0].name, _request_timeout=REQUEST_TIMEOUT)
        host = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    entry_url = f"http://{host}:{live.spec.ports[0].node_port}/"
    with progress.step(f"wait until the whole chain answers at {entry_url}"):
        # /readyz?chain=1, not /: it follows every call of the chain but writes no log line
        # that a test then counts. Several in a row: each node's kube-proxy programs a new
        # Service a moment after its pods are Ready, and one answer covers one path only.
        wait_answers(entry_url + "readyz?chain=1", timeout_s=60, in_a_row=CHAIN_ANSWERS_IN_A_ROW)
    forgotten: list[dict[str, Any]] = []
    if able.conntrack_here:
        # The poll's first tries, rejected before kube-proxy had the Service's endpoints, left
        # un-NATed bindings that would refuse the probe that next draws one of their source
        # ports (within 120 s): the stray refusals of issue 18.
        forgotten = forget_unnated(host, live.spec.ports[0].node_port)
        if forgotten:
            progress.say(f"   forgot {len(forgotten)} un-NATed conntrack binding(s) the readiness poll left at {entry_url}")
    return DeployedRun(
        run_id=run_id, pattern=pattern.value, objects=objs, app_namespace=opts.app_namespace,
        agents_namespace=opts.agents_namespace, entry_url=entry_url, nodes=len(nodes), injection=injection, render_options=opts,
        entry_service=entry["metadata"]["name"], forgotten_bindings=forgotten,
    )


def load_generator_image(provider: Any, progress: Progress) -> str:
    """The in-cluster load's image (issue 23): built (or taken from the cache) and loaded
    into the cluster, or pushed to its registry, once per provider; its ref."""
    key = (id(provider), "loadgen")
    if provider.capabilities.can_load_images and key not in _IMAGES_LOADED:
        with progress.step("build and load the load generator's image"):
            archive = cached_load_image(cache_root() / "images" / "loadgen")
            provider.load_images([archive])
        _IMAGES_LOADED.add(key)
    return Images.under(abilities(provider).registry).loadgen


def apply_with_injector(deployer: Deployer, objs: list[Obj], injector: list[Obj], app_ns: str, agents_ns: str, progress: Progress, timeout_s: float) -> None:
    """The injector first, Ready, its webhook in force (a dry-run app pod comes back
    injected), and only then the app Deployments: with failurePolicy Fail an app pod created
    earlier would be refused, and one admitted before the API server saw the webhook would
    run without its sidecars."""

    apps = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["namespace"] == app_ns]
    rest = [o for o in objs if o not in apps]
    webhook = [o for o in injector if o["kind"] == "MutatingWebhookConfiguration"]
    with progress.step(f"apply {len(rest) + len(injector) - len(webhook)} objects and the sidecar injector"):
        deployer.apply(rest + [o for o in injector if o not in webhook])
        deployer.wait_one("Deployment", agents_ns, "injector", timeout_s)
    with progress.step("register the injection webhook and wait until new app pods are injected"):
        deployer.apply(webhook)
        wait_injecting(deployer.core, app_ns, apps[0], "v1")
    with progress.step(f"apply {len(apps)} app Deployments (sidecars injected at admission)"):
        deployer.apply(apps)


CHAIN_ANSWERS_IN_A_ROW = 10


def wait_answers(url: str, timeout_s: float, in_a_row: int = 1) -> None:
    """Until `url` answers 200 `in_a_row` times running: kube-proxy programs a new Service a
    moment after its pods are Ready, on each node in its own time."""

    streak = 0

    def answers() -> bool:
        nonlocal streak
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                ok = resp.status == 200
        except (OSError, urllib.error.URLError):
            ok = False
        streak = streak + 1 if ok else 0
        return streak >= in_a_row

    poll(f"{url} to answer {in_a_row} times in a row", answers, timeout_s, interval_s=0.1)
