"""The workloads and what a pattern must carry for them."""

from __future__ import annotations

import pytest

from patternbench.errors import UsageError
from patternbench.load.workloads import WORKLOADS, cannot_carry, patterns_for, workload_spec
from patternbench.specs.patterns import Pattern


def test_unknown_workload_is_an_error_naming_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown workload 'bogus' .*http, grpc-unary, grpc-stream"):
        workload_spec("bogus")


@pytest.mark.parametrize("pattern", list(Pattern))
def test_only_the_waypoint_cannot_carry_grpc(pattern: Pattern) -> None:
    reason = cannot_carry(WORKLOADS["grpc-stream"], pattern)
    assert (reason is not None) == (pattern is Pattern.AMBIENT)
    assert cannot_carry(WORKLOADS["http"], pattern) is None


def test_without_patterns_those_that_cannot_carry_are_left_out_with_a_note() -> None:
    kept, notes = patterns_for(WORKLOADS["grpc-unary"], None, [])
    assert Pattern.AMBIENT not in kept and Pattern.DAEMONSET in kept
    assert len(notes) == 1 and "ambient" in notes[0] and "HTTP/1.1" in notes[0]
    assert patterns_for(WORKLOADS["http"], None, []) == (None, [])


def test_a_chosen_pattern_that_cannot_carry_is_an_error() -> None:
    with pytest.raises(UsageError, match="--workload grpc-unary with --pattern ambient: its waypoint proxies carry HTTP/1.1 only"):
        patterns_for(WORKLOADS["grpc-unary"], [Pattern.AMBIENT], [])
