"""What schemathesis cannot learn from a JSON Schema, given to its generator (tools/contract-test.sh
loads this with SCHEMATHESIS_HOOKS). Two rules of the API are not rules on one value, so the
OpenAPI document cannot state them, and every request that breaks them is rightly refused (400):

- a page token is one the service issued (the `next_page_token` of an earlier page; the services
  sign them), like an id of a resource that exists: a generated string never is one. The requests
  start at the first page instead (no token). A generated token of the wrong type is kept, so a
  negative case stays negative.
- a delivery's deadline comes after its pickup time (CreateDelivery, RescheduleDelivery): when a
  generated body has both, as valid timestamps, in the wrong order, the deadline is left out
  (it is optional), which breaks no other rule.

Nothing here changes what a check accepts; only the inputs that no document could describe.
"""
from datetime import datetime

import schemathesis


@schemathesis.hook
def map_query(context, query):
    if isinstance(query, dict) and isinstance(query.get("page_token"), str):
        query = dict(query)
        del query["page_token"]
    return query


def _instant(value):
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict):
        pickup, deadline = _instant(body.get("pickupTime")), _instant(body.get("deadline"))
        if pickup is not None and deadline is not None:
            try:
                wrong = deadline <= pickup
            except TypeError:  # one with an offset, one without
                wrong = False
            if wrong:
                body = dict(body)
                del body["deadline"]
    return body
