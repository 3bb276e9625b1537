"""The supervisor's restart backoff: doubling from 1 s, capped at 30 s, reset by uptime."""

from __future__ import annotations

from feature_service.embedded.supervisor import RestartBackoff


def test_a_process_that_keeps_dying_waits_twice_as_long_each_time_up_to_30_s() -> None:
    backoff = RestartBackoff()
    delays = [backoff.next_delay(uptime_s=0.5) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_process_that_stayed_up_a_minute_is_restarted_after_1_s_again() -> None:
    backoff = RestartBackoff()
    for _ in range(5):
        backoff.next_delay(uptime_s=1.0)
    assert backoff.next_delay(uptime_s=60.0) == 1
    assert backoff.next_delay(uptime_s=1.0) == 2
