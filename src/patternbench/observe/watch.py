"""One watch loop for every kind an observer follows (pods, EndpointSlices): per namespace,
list then watch, with a server-side timeout and a client request timeout (a dropped
connection cannot hang it), re-listing when the API answers 410 Gone; one JSON line per
event, stamped on the run's monotonic clock when it was delivered."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable

from kubernetes import watch
from kubernetes.client.rest import ApiException


class NamespacedWatcher:
    """Writes `out` for the given namespaces until stopped: `record(event_type, obj)` for every
    listed object and every event that `list_fn(namespace, **kw)` watches."""

    def __init__(
        self, list_fn: Callable[..., Any], record: Callable[[str, Any], dict[str, Any]], namespaces: list[str], out: Path,
    ) -> None:
        self.list_fn = list_fn
        self.record = record
        self.namespaces = namespaces
        self.out = out
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: list[watch.Watch] = []
        self._lock = threading.Lock()
        self._handle = out.open("a", buffering=1)

    def _write(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._handle.write(json.dumps(record) + "\n")

    def _run(self, namespace: str) -> None:
        resource_version = ""
        while not self._stop.is_set():
            try:
                if not resource_version:
                    listed = self.list_fn(namespace, _request_timeout=10)
                    for item in listed.items:
                        self._write(self.record("LISTED", item))
                    resource_version = listed.metadata.resource_version
                w = watch.Watch()
                with self._lock:
                    self._watches.append(w)
                if self._stop.is_set():
                    break
                stream = w.stream(self.list_fn, namespace, resource_version=resource_version, timeout_seconds=5, _request_timeout=15)
                for event in stream:
                    if event["type"] == "ERROR":
                        resource_version = ""  # 410 Gone arrives as an ERROR event: re-list
                        break
                    item = event["object"]
                    resource_version = item.metadata.resource_version
                    self._write(self.record(event["type"], item))
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = ""
                else:
                    self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - a dropped connection: watch again from where we were
                self._stop.wait(0.5)

    def start(self) -> NamespacedWatcher:
        for namespace in self.namespaces:
            thread = threading.Thread(target=self._run, args=(namespace,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop now: the library's Watch.stop() shuts the socket a watch is blocked reading
        from, so stopping does not wait out the server-side timeout (up to 5 s a case)."""
        self._stop.set()
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.stop()
        for thread in self._threads:
            thread.join(timeout=20)
        self._handle.close()
