"""patternbench: sidecar vs DaemonSet agents, measured on a real Kubernetes cluster."""

from __future__ import annotations

__version__ = "0.1.0"
