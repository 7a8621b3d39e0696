"""Kubernetes object names as the harness accepts them, checked once here: a DNS-1123 label
matched against the whole string (a pattern ending in `$` also matches before a trailing
newline, so "front\n" passed and failed only at the API server, after deploying)."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
FILE_NAME = re.compile(r"[-._a-zA-Z0-9]+")  # a ConfigMap key
# An image registry and repository prefix: host[:port][/path...], as an image reference has it.
REGISTRY = re.compile(r"[a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*/?")


def is_dns_label(name: object, most: int) -> bool:
    """A string that is a DNS-1123 label of at most `most` characters."""
    return isinstance(name, str) and len(name) <= most and DNS_LABEL.fullmatch(name) is not None


def is_file_name(name: object) -> bool:
    return isinstance(name, str) and FILE_NAME.fullmatch(name) is not None


def is_registry(text: object) -> bool:
    """A registry prefix images can be pushed under (e.g. europe-docker.pkg.dev/proj/repo)."""
    return isinstance(text, str) and len(text) <= 255 and REGISTRY.fullmatch(text) is not None
