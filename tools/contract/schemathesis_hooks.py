"""What schemathesis cannot learn from a JSON Schema, given to its generator (tools/contract-test.sh
loads this with SCHEMATHESIS_HOOKS). Three rules of the API are not rules on one value, so the
OpenAPI document cannot state them, and every request that breaks them is rightly refused (400):

- a page token is one the service issued (the `next_page_token` of an earlier page; the services
  sign them), like an id of a resource that exists: a generated string never is one. The requests
  start at the first page instead (no token). A generated token of the wrong type is kept, so a
  negative case stays negative.
- a delivery's deadline comes after its pickup time (CreateDelivery, RescheduleDelivery): when a
  generated body has both, as valid timestamps, in the wrong order, the deadline is left out
  (it is optional), which breaks no other rule.
- the `Idempotency-Key` header becomes the body's `requestId` (docs/gateway.md); sending both
  with different values is refused ("send one of them"). When a case has both as strings and they
  differ, the body's `requestId` is left out (it is optional).

The rules are applied with `map_case`, the one hook every phase runs (schemathesis 4's coverage
phase does not run `map_query` or `map_body`). Schemathesis validates a case again after a hook
changed it, so a negative case that a change made valid is then expected to pass, not to be
refused: nothing here changes what a check accepts, only the inputs that no document could
describe.

One check's verdict is corrected, and only where it is wrong about this API (`filter_failure`):
positive_data_acceptance (ST202) takes a 400 to mean "the data was refused", and accepts 404 and
409 as refusals that depend on the state of the system. This gateway maps gRPC's
FAILED_PRECONDITION to 400, as Google's and grpc-gateway's table does (a decision kept on
purpose: httpStatus(for:) in Sources/Gateway/Transcoder.swift), so a state refusal of valid data ("confirm it once the drone is at the
drop-off") is a 400 whose google.rpc.Status code is 9. Such an answer (status 400 and code 9, and
nothing else) is not counted as ST202; every other 400 to valid data still is, and no other
check is touched.
"""
import json
from datetime import datetime

import schemathesis


def _instant(value):
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


def _without(mapping, key):
    mapping = dict(mapping)
    del mapping[key]
    return mapping


@schemathesis.hook
def map_case(context, case):
    query = case.query
    if isinstance(query, dict) and isinstance(query.get("page_token"), str):
        case.query = _without(query, "page_token")
    body = case.body
    if isinstance(body, dict):
        pickup, deadline = _instant(body.get("pickupTime")), _instant(body.get("deadline"))
        if pickup is not None and deadline is not None:
            try:
                wrong = deadline <= pickup
            except TypeError:  # one with an offset, one without
                wrong = False
            if wrong:
                body = _without(body, "deadline")
        key = (case.headers or {}).get("Idempotency-Key")
        request_id = body.get("requestId")
        if isinstance(key, str) and isinstance(request_id, str) and request_id and request_id != key:
            body = _without(body, "requestId")
        if body is not case.body:
            case.body = body
    return case


FAILED_PRECONDITION = 9


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202" or response.status_code != 400:
        return True
    try:
        status = json.loads(response.content)
    except (ValueError, TypeError):
        return True
    return not (isinstance(status, dict) and status.get("code") == FAILED_PRECONDITION)
