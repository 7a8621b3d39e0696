"""The API server's figures from its own /metrics (a real scrape of the local cluster's
kube-apiserver v1.34, with a DaemonSet mesh deployed: 3 node proxies watching EndpointSlices)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from patternbench.measure.apiserver import STEADY, UPGRADE, figures_between, parse_metrics, phase_figures
from patternbench.observe.apiserver import kept_lines

SCRAPE = (Path(__file__).parent / "data" / "apiserver-metrics.txt").read_text()


def test_a_real_scrape_parses() -> None:
    snap = parse_metrics(SCRAPE)
    # As scraped: 10 cluster-wide EndpointSlice watches and 2 namespaced ones, summed.
    assert snap.watchers["endpointslices"] == 12
    assert snap.watch_events["endpointslices"] == 2595
    assert snap.watch_bytes["endpointslices"] == pytest.approx(5.739936e6)
    assert snap.objects["endpointslices"] == 7
    assert snap.storage_bytes == pytest.approx(8.781824e6)
    assert snap.cpu_s == pytest.approx(22.75) and snap.rss_bytes == pytest.approx(3.19442944e8)
    assert snap.requests["WATCH"] > 0 and snap.requests["GET"] > 0


def test_phase_figures_are_rates_over_the_phase_and_gauges_at_its_end() -> None:
    start = parse_metrics(SCRAPE)
    end = replace(start, watch_events={**start.watch_events, "endpointslices": start.watch_events["endpointslices"] + 300},
                  cpu_s=start.cpu_s + 3.0, watchers={**start.watchers, "endpointslices": 15})
    got = phase_figures(start, end, 60.0)
    assert got["watch_events_per_s"] == {"endpointslices": 5.0} and got["watch_events"] == {"endpointslices": 300}
    assert got["cpu_cores"] == pytest.approx(0.05)
    assert got["watchers"]["endpointslices"] == 15
    dipped = replace(start, watchers={**start.watchers, "endpointslices": 11})  # a watch re-opening at the end's scrape
    assert phase_figures(start, dipped, 60.0)["watchers"]["endpointslices"] == 12
    assert got["requests_per_s"] == {}  # no counter moved
    restarted = replace(start, cpu_s=1.5)
    assert phase_figures(start, restarted, 10.0)["cpu_cores"] == pytest.approx(0.15)
    with pytest.raises(ValueError):
        phase_figures(start, end, 0)


def test_scrapes_keep_only_what_is_read() -> None:
    noisy = "# HELP other_metric x\n# TYPE other_metric counter\nother_metric_total 5\n" + SCRAPE + "etcd_request_duration_seconds_bucket{le=\"1\"} 3\n"
    kept = kept_lines(noisy)
    assert "other_metric" not in kept and "etcd_request" not in kept
    assert parse_metrics(kept) == parse_metrics(SCRAPE)


def test_figures_between_from_the_two_scrapes() -> None:
    start = {"label": STEADY[0], "t": 100.0, "text": SCRAPE}
    end = {"label": STEADY[1], "t": 115.0, "text": SCRAPE.replace("process_cpu_seconds_total 22.75", "process_cpu_seconds_total 24.25")}
    got = figures_between([start, end], STEADY)
    assert got is not None and got["seconds"] == 15.0 and got["cpu_cores"] == pytest.approx(0.1)
    assert got["watchers"]["endpointslices"] == 12
    assert figures_between([start], STEADY) is None
    assert figures_between([start, end], UPGRADE) is None  # a trial without an upgrade
    refused = {**end, "error": "ApiException: (403) Forbidden"}
    refused.pop("text")
    assert figures_between([start, refused], STEADY) == {"error": "ApiException: (403) Forbidden"}


def test_a_bad_scrape_is_an_error_in_the_figures_not_a_lost_report() -> None:
    start = {"label": STEADY[0], "t": 100.0, "text": SCRAPE}
    same_time = {"label": STEADY[1], "t": 100.0, "text": SCRAPE}
    assert "error" in figures_between([start, same_time], STEADY)
