"""An agent file's config templates: a config file whose name ends in `.j2` is a Jinja
template of the run's mesh (its services, their pods' DNS names, the ports), rendered when
the run's objects are, and mounted under its name without `.j2`.

A proxy whose configuration names every upstream (HAProxy's backends) needs one block per
app service; the services are the run's (3 or 48), so the file cannot list them. Templates
run in Jinja's sandbox with undefined names an error: an agent file is not trusted code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from patternbench.errors import UsageError

SUFFIX = ".j2"
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass(frozen=True)
class MeshService:
    name: str
    port: int  # the Service's port (what apps ask for)
    pod_dns: str  # the headless Service's name: every ready pod of the service (proxy.pod_dns)


@dataclass(frozen=True)
class TemplateContext:
    """What a template can read."""

    namespace: str  # the apps' namespace
    cluster_domain: str
    app_port: int  # where each app listens in its pod
    outbound_port: int
    inbound_port: int
    max_pods: int  # the most pods one service can have at once (replicas + surge)
    placement: str  # where this copy runs: "sidecar" (beside every app) or "node" (once per node)
    services: list[MeshService] = field(default_factory=list)


def is_template(file_name: str) -> bool:
    return file_name.endswith(SUFFIX)


def mounted_name(file_name: str) -> str:
    return file_name.removesuffix(SUFFIX)


def check_template(file_name: str, text: str) -> None:
    """A template that parses, and renders for a small mesh; a one-line UsageError otherwise."""
    for placement in ("sidecar", "node"):
        sample = TemplateContext("apps", "cluster.local", 8080, 15001, 15006, 3, placement, [MeshService("a", 80, "a-pods.apps.svc.cluster.local")])
        render_template(file_name, text, sample)


def render_template(file_name: str, text: str, context: TemplateContext) -> str:
    try:
        return _ENV.from_string(text).render(asdict(context))
    except jinja2.TemplateSyntaxError as exc:
        raise UsageError(f"{file_name} line {exc.lineno}: {exc.message}") from None
    except (jinja2.UndefinedError, jinja2.exceptions.SecurityError) as exc:
        raise UsageError(f"{file_name}: {exc}") from None
