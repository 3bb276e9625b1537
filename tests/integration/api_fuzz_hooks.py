"""schemathesis checks of our own, loaded by the fuzz test (`SCHEMATHESIS_HOOKS`).

schemathesis' `positive_data_acceptance` wants every request the schema admits to be
accepted. Some refusals no JSON schema can state (its docs: "an unknown id or a
cross-field rule"), so the fuzz test lets those operations answer 422; the check here
keeps that allowance narrow: a schema-valid request may be refused only by one of the
rules the routes state in `api.request_fields`, with its message, never by the request
model (a list of validation errors would mean the schema admits what the model refuses).
And no refusal carries the request back: a 4xx answer stays short, whatever was sent.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

# The rules a schema cannot state (api/request_fields.py), by the messages that name them.
RULES_THE_SCHEMA_CANNOT_STATE = re.compile(
    "|".join(
        [
            r"^unknown feature ",  # names the deployed definitions hold
            r"^unknown feature service ",
            r"^unknown push source ",
            r"^source '\w+' has no column\(s\) ",
            r"^feature view '\w+' needs entity key ",
            r"^feature names collide ",
            r"^give exactly one of `features` or `feature_service`$",  # cross-field
            r"^no features requested$",
            r"needs the same number of values$",
            r"^entity_df already has column\(s\) ",
            r"^row \d+: ",  # a row against its source's schema
            r"^as_of: (?!timestamp '' )",  # a string that is no time (not "": the schema says)
            r"^as_of .* is outside 1900-01-01\.\.2199-12-31",
            r"^as_of is too far in the past for the online store",  # the data held
            r"^event_timestamp\[\d+\]: (?!timestamp '' )",
        ]
    )
)
MAX_REFUSAL_BYTES = 4096


@schemathesis.check
def refused_only_by_a_rule_the_schema_cannot_state(
    ctx: Any, response: Any, case: Any
) -> bool | None:
    """A schema-valid request answered 422 names one of the rules above."""
    meta = getattr(case, "meta", None)
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    try:
        detail = response.json()["detail"]
    except (ValueError, KeyError, TypeError):
        raise AssertionError(f"a 422 without a JSON detail: {response.text[:300]}") from None
    if not isinstance(detail, str):
        raise AssertionError(
            "the schema admits a request its model refuses (the schema must say it): "
            f"{str(detail)[:600]}"
        )
    if not RULES_THE_SCHEMA_CANNOT_STATE.search(detail):
        raise AssertionError(
            f"a schema-valid request refused by a rule the schema could state: {detail[:300]}"
        )
    return None


@schemathesis.check
def refusals_never_echo_the_request(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx answer is a short message, whatever the size of the request."""
    if 400 <= response.status_code < 500 and len(response.content) > MAX_REFUSAL_BYTES:
        raise AssertionError(
            f"a {response.status_code} of {len(response.content)} bytes: "
            f"{response.content[:200]!r}..."
        )
    return None
