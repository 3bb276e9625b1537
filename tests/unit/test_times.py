"""One conversion of times, exact to the microsecond, whatever the path a time takes:
an event's time, an `as_of`, a training-set row (numbers, strings, datetimes), generate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_service.autofe.types import event_times
from feature_service.events.parsing import parse_timestamp
from feature_service.offline.historical import epoch_seconds
from feature_service.requests import RequestError, query_time
from feature_service.sdk import _columns
from feature_service.times import (
    InvalidTime,
    datetime_seconds,
    datetimes_of_seconds,
    micros_of_seconds,
    parse_time,
    time_column,
)

# times of events seen in a public data set: ms and µs, a quarter of which a
# nanosecond-float path put one float step (2.4e-7 s) early
MS_TIMES = {
    "2026-11-03T06:58:25.765Z": 1793689105.765,
    "2026-11-03T06:58:25.001Z": 1793689105.001,
    "2026-11-03T06:58:25.123456Z": 1793689105.123456,
    "2199-12-31T23:59:59.999999Z": 7258118399.999999,
    "1900-01-01T00:00:00.000001Z": -2208988799.999999,
}


@pytest.mark.parametrize(("text", "seconds"), MS_TIMES.items())
def test_ms_and_us_times_are_the_nearest_float_on_every_path(text: str, seconds: float) -> None:
    as_datetime = datetime.fromisoformat(text)
    assert as_datetime.timestamp() == seconds  # Python's own, the reference
    assert parse_time(text) == seconds
    assert parse_timestamp(text) == seconds  # events
    assert query_time(text) == seconds  # as_of
    column = pd.Series([text])
    assert epoch_seconds(column).tolist() == [seconds]  # training-set rows as strings
    assert epoch_seconds(pd.to_datetime(column, utc=True)).tolist() == [seconds]  # datetimes
    naive = pd.to_datetime(column, utc=True).dt.tz_localize(None)
    assert epoch_seconds(naive).tolist() == [seconds]
    assert epoch_seconds(naive.astype("datetime64[us]")).tolist() == [seconds]
    assert epoch_seconds(pd.Series([pd.Timestamp(text)], dtype=object)).tolist() == [seconds]
    assert datetime_seconds(naive).tolist() == [seconds]  # generate, SDK push
    assert datetimes_of_seconds([seconds])[0] == np.datetime64(text.rstrip("Z"), "us")


def test_a_zone_is_honoured_and_nanoseconds_are_cut_off_like_fromisoformat() -> None:
    assert parse_time("2026-11-03T08:58:25.765+02:00") == 1793689105.765
    assert parse_time("2026-11-03T06:58:25.7659999Z") == 1793689105.765999
    stamps = pd.Series(pd.to_datetime(["2026-11-03T06:58:25.765999999Z"]))
    assert time_column(stamps, "t").tolist() == [1793689105.765999]
    before_1970 = pd.Series(np.array(["1969-12-31T23:59:59.9999995"], dtype="datetime64[ns]"))
    assert time_column(before_1970, "t").tolist() == [-0.000001]  # floor, not towards 0
    assert parse_time("1969-12-31T23:59:59.9999995") == -0.000001


def test_an_integer_of_400_digits_is_refused_with_a_short_message() -> None:
    huge = int("9" * 400)
    for value in (huge, -huge):
        with pytest.raises(InvalidTime, match=r"is outside 1900-01-01\.\.2199-12-31") as caught:
            parse_time(value)
        assert len(str(caught.value)) < 120
        with pytest.raises(ValueError, match="is outside"):
            parse_timestamp(value)
        with pytest.raises(RequestError, match="as_of"):
            query_time(value)
        with pytest.raises(RequestError, match=r"event_timestamp\[1\]: .* is outside"):
            epoch_seconds(pd.Series([1.0e9, value], dtype=object))


REFUSED = [
    (True, "a timestamp must be epoch seconds or ISO-8601, got a boolean"),
    (float("inf"), "timestamp inf is not finite"),
    ("soon", "timestamp 'soon' is not epoch seconds or ISO-8601"),
    (
        1793491500000,
        "timestamp 1793491500000 is outside 1900-01-01..2199-12-31 (epoch milliseconds?",
    ),
    ([1], "a timestamp must be epoch seconds or ISO-8601, got [1]"),
    ("3000-01-01T00:00:00Z", "timestamp '3000-01-01T00:00:00Z' is outside"),
]


@pytest.mark.parametrize(("value", "message"), REFUSED)
def test_refusals_keep_the_messages_events_always_had(value: object, message: str) -> None:
    with pytest.raises(InvalidTime) as caught:
        parse_time(value)
    assert str(caught.value).startswith(message)
    with pytest.raises(ValueError) as as_event:
        parse_timestamp(value)
    assert str(as_event.value).startswith(message)


def test_datetimes_outside_the_years_held_are_refused_in_their_own_unit() -> None:
    far = pd.Series(np.array(["3000-01-01"], dtype="datetime64[s]"))
    with pytest.raises(InvalidTime, match="t 3000-01-01T00:00:00 is outside"):
        time_column(far, "t")
    with pytest.raises(InvalidTime, match="t has 1 missing values"):
        time_column(pd.Series([pd.NaT, pd.Timestamp("2026-01-01")]), "t")


def test_seconds_back_to_microseconds_is_exact_up_to_2200() -> None:
    us = np.array([7_258_118_399_999_999, 7_258_118_399_999_997, -2_208_988_799_999_999])
    seconds = us / 1e6
    assert micros_of_seconds(seconds).tolist() == us.tolist()


MICROS = st.integers(-2_208_988_800 * 10**6, 7_258_118_400 * 10**6 - 1)


@settings(max_examples=400, deadline=None)
@given(st.lists(MICROS, min_size=1, max_size=20), st.sampled_from(["ns", "us"]))
def test_column_and_scalar_paths_agree_bit_for_bit(micros: list[int], unit: str) -> None:
    """Random µs datetimes: each path gives the float of ``us / 10**6``, bit for bit."""
    want = [us / 10**6 for us in micros]
    stamps = [datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us) for us in micros]
    texts = [s.isoformat() for s in stamps]
    assert [parse_time(t) for t in texts] == want
    assert [parse_time(s) for s in stamps] == want
    assert [s.timestamp() for s in stamps] == want
    values = np.array(micros, dtype=np.int64).view("datetime64[us]").astype(f"datetime64[{unit}]")
    naive = pd.Series(values)
    assert time_column(naive, "t").tolist() == want
    kolkata = naive.dt.tz_localize("UTC").dt.tz_convert("Asia/Kolkata")
    assert time_column(kolkata, "t").tolist() == want
    assert time_column(pd.Series(texts), "t").tolist() == want
    assert datetime_seconds(naive).tolist() == want
    assert micros_of_seconds(np.array(want)).tolist() == micros
    shifted = [s.astimezone(timezone(timedelta(hours=-7))).isoformat() for s in stamps]
    assert [parse_time(t) for t in shifted] == want


def test_generate_reads_sample_times_as_the_worker_does() -> None:
    """`generate` profiles a sample's times: the same floats the worker will give them."""
    texts = list(MS_TIMES)
    want = list(MS_TIMES.values())
    assert event_times(pd.Series(texts)).tolist() == want
    assert event_times(pd.Series(pd.to_datetime(texts, utc=True))).tolist() == want
    naive = pd.Series(pd.to_datetime(texts, utc=True)).dt.tz_localize(None)
    assert event_times(naive).tolist() == want
    mixed = pd.Series([texts[0], want[1]] * 10 + ["not a time", None], dtype=object)
    got = event_times(mixed).tolist()
    assert got[:2] == want[:2] and np.isnan(got[-2]) and np.isnan(got[-1])


def test_datetimes_pushed_by_the_sdk_are_sent_as_their_exact_seconds() -> None:
    texts = list(MS_TIMES)
    frame = pd.DataFrame({"ts": pd.to_datetime(texts, utc=True), "naive": pd.to_datetime(texts)})
    sent = _columns(frame)
    assert sent["ts"] == list(MS_TIMES.values())
    assert sent["naive"] == [parse_timestamp(t) for t in texts]
