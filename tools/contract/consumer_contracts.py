"""Consumer contracts (issue 14, item 4): recorded from the consumers' own tests, replayed
against the real providers, served by a stub, and checked for coverage of every RPC.

    consumer_contracts.py build    --descriptor-set D --recordings DIR --out contracts/consumers
    consumer_contracts.py replay   --descriptor-set D --server HOST:PORT... [--junit F] FILE...
    consumer_contracts.py stub     --descriptor-set D --contract FILE --port-file F
    consumer_contracts.py coverage --descriptor-set D FILE...
    consumer_contracts.py consumer-check --descriptor-set D --contract F --dronectl PATH
    consumer_contracts.py faults   --descriptor-set D --contract F [--contract F]...

Recording: every client of a process started with FABRIKAM_CONTRACT_RECORD=DIR appends each
call it makes (messages as protobuf bytes, the status) to DIR/<consumer>.<pid>.jsonl
(Sources/RPC/Client/CallRecording.swift). `make contract-record` runs the consumers' tests
that way and then `build`.

build: per consumer (gateway, workflow, supervisor, drone-simulator, dronectl, ...), the first
call of each (method, status) it made, as JSON, in the order made. What a provider answered
from its own state needs that state on replay, so each step brings along the calls that made
it (a Pact "provider state", found in the recording instead of written by hand):
  * a value the request took from an earlier response is saved from that response on replay
    (`save` and `${name}`), and the call that answered it is a step too;
  * a value the request names that first went out in an earlier request (a package id the
    gateway chose, then the workflow asked for) brings that earlier call along;
  * a value the system made up (it contains a digit: ids, request ids) is made up again on
    replay, the same shape (`${fresh:N}`), so replays never collide; other literal values
    (the seeded demo account) are sent as recorded.
Calls of another consumer that a step needs are marked `given` (state, not this consumer's
contract). Statuses the provider did not choose (deadlines, cancellations, UNAVAILABLE) are
no contract; a stream the consumer stopped reading is kept with the responses it read.

replay: every step in order against the servers (each service where its reflection lists
it); each must end with the recorded status, within a grace period for state that a
provider builds asynchronously (a saga), and its responses must have the recorded shape:
every field the consumer saw is there with the same JSON type (Pact's type matching), a
list the consumer saw filled is not empty, enum values are equal.

stub: a gRPC server (grpcio, not our runtime) that answers each contract call whose request
matches a recorded one (equal fields; `${...}` matches any value) with the recorded answer,
so a consumer can be tested without its providers. Anything else: FAILED_PRECONDITION naming
the method and the nearest recorded request's first difference.

coverage: every RPC of every fabrikam service in the descriptor set is some consumer's own
(not `given`) step; the exit status is 1 otherwise, naming the RPCs without a contract.
"""
import argparse
import glob
import json
import os
import re
import sys
import time
import uuid
from concurrent import futures
from xml.sax.saxutils import escape

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

STATUS = [c.name for c in sorted(grpc.StatusCode, key=lambda c: c.value[0])]  # by number
NOT_THE_PROVIDERS = {"CANCELLED", "DEADLINE_EXCEEDED", "UNAVAILABLE", "UNKNOWN", "INTERNAL"}
HARNESS = re.compile(r"(\.xctest|testing-helper|PackageTests)$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT")
IDLIKE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{5,}$")
UUIDLIKE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
VARIABLE = re.compile(r"\$\{([^}]+)\}")
CONTRACT_PACKAGE = "fabrikam."
READS = re.compile(r"(Get|List|Track|Validate)")
MAX_REQUESTS = 5  # of a client stream, kept per step
MAX_RESPONSES = 3  # of a server stream


class Contract:
    """The descriptor set: services, methods and message classes."""

    def __init__(self, path):
        files = descriptor_pb2.FileDescriptorSet()
        with open(path, "rb") as handle:
            files.ParseFromString(handle.read())
        self.pool = descriptor_pool.DescriptorPool()
        for proto in files.file:
            self.pool.Add(proto)
        self.methods = {}
        for proto in files.file:
            for service in proto.service:
                full = (proto.package + "." if proto.package else "") + service.name
                for method in self.pool.FindServiceByName(full).methods:
                    self.methods[f"{full}/{method.name}"] = method

    def contract_methods(self):
        return sorted(name for name in self.methods if name.startswith(CONTRACT_PACKAGE))

    def message(self, descriptor):
        return message_factory.GetMessageClass(descriptor)()

    def to_json(self, descriptor, raw, defaults=False):
        """proto3 JSON; with `defaults`, fields without presence are printed even when 0, "" or
        empty (an answer's false is no missing field)."""
        message = self.message(descriptor)
        message.ParseFromString(raw)
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=defaults)

    def from_json(self, descriptor, value):
        message = self.message(descriptor)
        json_format.ParseDict(value, message)
        return message.SerializeToString()


# --- build --------------------------------------------------------------------------------


def load_recordings(contract, directory):
    calls, skipped = [], 0
    for path in sorted(glob.glob(os.path.join(directory, "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    skipped += 1  # a process killed in the middle of a line
                    continue
                method = contract.methods.get(record["method"].lstrip("/"))
                if method is None or not record["method"].lstrip("/").startswith(CONTRACT_PACKAGE):
                    continue  # health checks, reflection, test services: not the contract
                try:
                    record["call"] = record["method"].lstrip("/")
                    record["request_json"] = [contract.to_json(method.input_type, bytes.fromhex(r)) for r in record["requests"]]
                    record["response_json"] = [contract.to_json(method.output_type, bytes.fromhex(r)) for r in record["responses"]]
                except Exception as error:  # noqa: BLE001 - a recording that does not decode is reported
                    print(f"skipped a {record['method']} call that does not decode: {error}", file=sys.stderr)
                    skipped += 1
                    continue
                record["status"] = STATUS[record["code"]]
                record["server_streaming"] = method.server_streaming
                record["client_streaming"] = method.client_streaming
                calls.append(record)
    calls.sort(key=lambda r: r["started_ns"])
    for index, call in enumerate(calls):
        call["index"] = index
    return calls, skipped


def walk(value, path=()):
    """(path, string) for every string in a JSON tree."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, path + (key,))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from walk(item, path + (position,))
    elif isinstance(value, str):
        yield path, value


def idlike(text):
    return bool(IDLIKE.match(text)) and not TIMESTAMP.match(text) and not text.isupper() and not text.isdigit()


def ids(value):
    """(path, value) of every string of a JSON tree that may name something: one that looks
    like an id, or any value of a field named ...Id (a package id may be "0")."""
    for path, text in walk(value):
        key = path[-1] if path and isinstance(path[-1], str) else ""
        if idlike(text) or (text and key.endswith("Id") and not TIMESTAMP.match(text)):
            yield path, text


def expectation(call):
    """(status, stopped) of a recorded call as a contract, or None when it is no contract."""
    if call["local"] and call["status"] == "CANCELLED" and call["server_streaming"] and call["response_json"]:
        return "OK", True  # the consumer read what it needed and stopped
    if call["local"] or call["status"] in NOT_THE_PROVIDERS:
        return None
    return call["status"], False


def build(contract, calls):
    """The contract of every consumer, from the recorded calls (all processes, in time order)."""
    produced, sent = {}, {}  # value -> (first call index, path) in a response / in a request
    answers = {}  # value -> [(call index, path)] of every answer that held it
    changes = {}  # value -> [(call index, service)] of the successful calls that changed state with it
    answered = {}  # value -> [(call index, service)] of the answers that named it
    for call in calls:
        service = call["call"].split("/")[0]
        if call["status"] == "OK" and not READS.match(call["call"].split("/")[1]):
            for request in call["request_json"]:
                for _, text in ids(request):
                    changes.setdefault(text, []).append((call["index"], service))
        for response in call["response_json"]:
            for _, text in ids(response):
                answered.setdefault(text, []).append((call["index"], service))
        for position, response in enumerate(call["response_json"]):
            for path, text in ids(response):
                produced.setdefault(text, (call["index"], (position,) + path))
                answers.setdefault(text, []).append((call["index"], (position,) + path))
        # Where a value went out first in a call that changed state and succeeded (a read of it
        # before then, answered NOT_FOUND, made nothing).
        creates = call["status"] == "OK" and not READS.match(call["call"].split("/")[1])
        for request in call["request_json"]:
            for _, text in ids(request):
                if creates or text not in sent:
                    if text not in sent or (creates and not sent[text][1]):
                        sent[text] = (call["index"], creates)

    consumers = sorted({c["consumer"] for c in calls if not HARNESS.search(c["consumer"])})
    contracts = {}
    for consumer in consumers:
        chosen, seen = [], set()
        for call in calls:
            if call["consumer"] != consumer:
                continue
            outcome = expectation(call)
            if outcome is None or (call["call"], outcome[0]) in seen:
                continue
            if outcome[0] != "OK" and READS.match(call["call"].split("/")[1]) and reads_state_of_another_service(call, calls, produced):
                continue  # e.g. NOT_FOUND while a saga had not yet made it: timing, not a contract
            if outcome[0] == "OK" and READS.match(call["call"].split("/")[1]) and not grounded(call, changes, answered):
                continue  # it read state made outside any recorded call (a test's own setup)
            if outcome[0] not in ("OK", "UNIMPLEMENTED") and waited_for(call, consumer, calls, answers, sent, changes):
                # A refusal of state another consumer's flow made long before (a cancel once
                # the flight has landed): the replay runs its steps back to back, so what it
                # answers there depends on time, not on the contract.
                continue
            seen.add((call["call"], outcome[0]))
            chosen.append(call["index"])
        contracts[consumer] = steps_for(consumer, chosen, calls, answers, sent, changes)
    return contracts


ELAPSED_NS = 5_000_000_000


def waited_for(call, consumer, calls, answers, sent, changes):
    """Whether the call came more than ELAPSED_NS after a change another consumer made to the
    state it needs in the service it calls."""
    steps = steps_for(consumer, [call["index"]], calls, answers, sent, changes, indices=True)
    service = call["call"].split("/")[0]
    return any(calls[i]["consumer"] != consumer and not READS.match(calls[i]["call"].split("/")[1])
               and calls[i]["call"].split("/")[0] == service
               and call["started_ns"] - calls[i]["started_ns"] > ELAPSED_NS for i in steps)


def reads_state_of_another_service(call, calls, produced):
    """Whether the request names a value that another service's answer made up earlier."""
    service = call["call"].split("/")[0]
    for request in call["request_json"]:
        for _, text in ids(request):
            if text in produced and produced[text][0] < call["index"]:
                if calls[produced[text][0]]["call"].split("/")[0] != service:
                    return True
    return False


def earlier(entries, index, service):
    """The latest entry before `index` for `service`, or None."""
    found = [at for at, where in entries if at < index and where == service]
    return found[-1] if found else None


def grounded(call, changes, answered):
    """Whether every value a read names (one with a digit: made up, not seeded) was given to its
    service by an earlier recorded call, or named by an earlier answer of any service (it may
    have reached this one through the queue)."""
    service = call["call"].split("/")[0]
    for request in call["request_json"]:
        for _, text in ids(request):
            if any(ch.isdigit() for ch in text):
                if earlier(changes.get(text, []), call["index"], service) is None and \
                        not any(at < call["index"] for at, _ in answered.get(text, [])):
                    return False
    return True


def steps_for(consumer, chosen, calls, answers, sent, changes, indices=False):
    """The consumer's chosen calls and the calls whose state they need, as replayable steps.
    A value a request took from an answer is saved from the first answer that held it (the
    latest would be a poll of yesterday's state, and bring all history along)."""
    needed, uses, fresh = set(), {}, {}  # uses: (step index, value) -> (answering index, path)

    def first_answer(text, index):
        found = [entry for entry in answers.get(text, []) if entry[0] < index]
        return found[0] if found else None
    pending = [(index, False) for index in chosen]
    while pending:
        index, brought_as_state = pending.pop()
        if index in needed:
            continue
        needed.add(index)
        service = calls[index]["call"].split("/")[0]
        reads = READS.match(calls[index]["call"].split("/")[1]) is not None
        for request in calls[index]["request_json"]:
            for _, text in ids(request):
                # What a call finds lives in the service it asks: the latest call that changed
                # that service with this value comes along (GetDelivery, RecordFailedChange:
                # the ScheduleDelivery of that delivery). Not again for a call brought along
                # for its state, or every call would bring its whole history.
                change = earlier(changes.get(text, []), index, service) if reads or not brought_as_state else None
                if change is not None:
                    pending.append((change, True))
                answer = first_answer(text, index)
                if answer is not None:
                    uses[(index, text)] = answer
                    pending.append((answer[0], brought_as_state))
                elif text in sent and sent[text][0] < index:
                    pending.append((sent[text][0], brought_as_state))
    if indices:
        return sorted(needed)
    names = {}
    for source, path in sorted(set(uses.values()), key=lambda item: (item[0], repr(item[1]))):
        names[(source, path)] = f"v{len(names) + 1}"

    def substitute(value, at):
        if isinstance(value, dict):
            return {key: substitute(item, at) for key, item in value.items()}
        if isinstance(value, list):
            return [substitute(item, at) for item in value]
        if isinstance(value, str) and value:
            if (at, value) in uses:
                return "${" + names[uses[(at, value)]] + "}"
            if UUIDLIKE.match(value) and first_answer(value, at) is None:
                if value not in fresh:
                    fresh[value] = f"fresh:{len(fresh) + 1}:uuid"
                return "${" + fresh[value] + "}"
        return value

    steps = []
    own = set(chosen)
    for index in sorted(needed):
        call = calls[index]
        outcome = expectation(call) or (call["status"], False)
        step = {"call": call["call"]}
        if call["consumer"] != consumer or index not in own:
            step["given"] = True  # state this consumer's calls need, not its own contract
            step["by"] = call["consumer"]
        requests = [substitute(r, index) for r in call["request_json"][:MAX_REQUESTS]]
        if call["client_streaming"]:
            step["requests"] = requests
        else:
            step["request"] = requests[0] if requests else {}
        step["expect"] = outcome[0]
        responses = call["response_json"][:MAX_RESPONSES]
        if outcome[0] == "OK":
            if call["server_streaming"]:
                step["responses"] = responses
                # What it read before it stopped; of a stream that ended by itself, at
                # least one message when it had any (how many more is the flight's timing).
                step["min_responses"] = len(responses) if outcome[1] else min(1, len(responses))
            elif responses:
                step["response"] = responses[0]
        save = {name: list(path) for (source, path), name in names.items() if source == index}
        if save:
            step["save"] = dict(sorted(save.items()))
        steps.append(step)
    return steps


def command_build(args):
    contract = Contract(args.descriptor_set)
    calls, skipped = load_recordings(contract, args.recordings)
    if not calls:
        sys.exit(f"no recorded calls in {args.recordings} (run the consumers' tests with FABRIKAM_CONTRACT_RECORD set)")
    contracts = build(contract, calls)
    os.makedirs(args.out, exist_ok=True)
    for consumer, steps in contracts.items():
        own = [s for s in steps if not s.get("given")]
        document = {
            "consumer": consumer,
            "recorded_by": "make contract-record (the consumers' tests with FABRIKAM_CONTRACT_RECORD)",
            "interactions": len(own),
            "steps": steps,
        }
        path = os.path.join(args.out, f"{consumer}.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, sort_keys=False)
            handle.write("\n")
        print(f"{path}: {len(own)} interactions, {len(steps) - len(own)} given steps")
    print(f"{len(calls)} calls recorded, {skipped} lines skipped")


# --- replay -------------------------------------------------------------------------------


def made_up(spec):
    """A new value for `${fresh:N:uuid}`: only uuids a client made up are made up again."""
    return str(uuid.uuid4())


def fill(value, variables):
    if isinstance(value, dict):
        return {key: fill(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, variables) for item in value]
    if isinstance(value, str):
        def one(match):
            name = match.group(1)
            if name not in variables:
                if not name.startswith("fresh:"):
                    raise KeyError(f"${{{name}}} was not saved: the step that answers it failed")
                variables[name] = made_up(name)
            return variables[name]
        return VARIABLE.sub(one, value)
    return value


def kind(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def shape_problems(expected, actual, path="response"):
    """Where `actual` lacks what the consumer saw in `expected` (type matching)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path} is {kind(actual)}, the consumer read an object"]
        problems = []
        for key, item in expected.items():
            # Absent although every field without presence is printed: a message or optional
            # field the provider leaves unset in this state (a delivery without a drone yet).
            # What a consumer must find is what it saves for later steps (`save`).
            if key in actual:
                problems += shape_problems(item, actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{path} is {kind(actual)}, the consumer read a list"]
        if expected and not actual:
            return [f"{path} is empty, the consumer read {len(expected)} elements"]
        return shape_problems(expected[0], actual[0], f"{path}[0]") if expected else []
    if kind(expected) != kind(actual):
        # An enum value the consumer's contract does not know arrives as a number.
        return [f"{path} is {kind(actual)} {json.dumps(actual)}, the consumer read a {kind(expected)}"]
    return []


class Servers:
    """Which server offers each service (by its reflection), and a channel to each."""

    def __init__(self, addresses):
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
        self.channels = {}
        for address in addresses:
            channel = grpc.insecure_channel(address)
            for service in ProtoReflectionDescriptorDatabase(channel).get_services():
                self.channels.setdefault(service, channel)

    def channel(self, call):
        service = call.split("/")[0]
        if service not in self.channels:
            raise LookupError(f"no server offers {service}")
        return self.channels[service]


def invoke(contract, channel, step, requests, timeout):
    """(status name, message, responses as JSON) of one call."""
    method = contract.methods[step["call"]]
    path = "/" + step["call"]
    encoded = [contract.from_json(method.input_type, r) for r in requests]
    read = []
    try:
        if method.client_streaming and method.server_streaming:
            responses = channel.stream_stream(path)(iter(encoded), timeout=timeout)
            read = take(responses, step)
        elif method.client_streaming:
            read = [channel.stream_unary(path)(iter(encoded), timeout=timeout)]
        elif method.server_streaming:
            responses = channel.unary_stream(path)(encoded[0], timeout=timeout)
            read = take(responses, step)
        else:
            read = [channel.unary_unary(path)(encoded[0], timeout=timeout)]
        status, message = "OK", ""
    except grpc.RpcError as error:
        status, message = error.code().name, error.details() or ""
    return status, message, [contract.to_json(method.output_type, raw, defaults=True) for raw in read]


def take(responses, step):
    """At most as many responses as the consumer read (then the call is cancelled); a stream
    recorded empty is read to its end."""
    wanted = len(step.get("responses") or [])
    read = []
    for raw in responses:
        read.append(raw)
        if wanted and len(read) >= wanted:
            responses.cancel()
            break
    return read


def lookup(value, path):
    for part in path:
        value = value[part]
    return value


def replay_file(contract, servers, path, grace):
    with open(path, encoding="utf-8") as handle:
        return replay(contract, servers, json.load(handle), grace)


def replay(contract, servers, document, grace):
    """(consumer, [(step name, problem or None, seconds)], notes) of one contract's replay.
    The consumer's own steps are judged; a `given` step (another consumer's call, replayed for
    the state it leaves) only notes what went differently: its own file judges it, and a step
    that needed what it failed to make fails for that reason."""
    variables, results, notes = {}, [], []
    for number, step in enumerate(document["steps"], 1):
        name = f"step {number}: {step['call']}" + (f" (given, by {step['by']})" if step.get("given") else "") + f" -> {step['expect']}"
        started = time.monotonic()
        problems = replay_step(contract, servers, step, variables, grace)
        if step.get("given"):
            notes += [f"{name}: {problem}" for problem in problems]
        elif step.get("pending"):
            # Pact's pending interactions: recorded, never yet verified against the provider
            # (`make contract-record` marks what its first replay could not reproduce).
            # Reported, not judged, until a recording where it passes.
            notes.append(f"{name}: pending ({step['pending']})" + (f", still: {'; '.join(problems)}" if problems else ", now passes: re-record"))
        else:
            results.append((name, "; ".join(problems) or None, time.monotonic() - started))
    return document["consumer"], results, notes


def replay_step(contract, servers, step, variables, grace):
    """What went differently from what the consumer relies on (nothing: [])."""
    try:
        requests = fill(step["requests"] if "requests" in step else [step["request"]], variables)
    except KeyError as error:
        return [str(error.args[0])]
    try:
        channel = servers.channel(step["call"])
    except LookupError as error:
        # No server of the system offers the service: what a call to it gets is UNIMPLEMENTED.
        return [] if step["expect"] == "UNIMPLEMENTED" else [f"{error}, the consumer relies on {step['expect']}"]
    # A read may wait for state a saga builds: it is asked again within the grace period.
    # A call that changes state goes once, unless it was answered NOT_FOUND where the consumer
    # relies on another status: a NOT_FOUND changed nothing, and the entity it names may be one
    # that a saga of an earlier given step has not made yet (CI's load can delay it), so it
    # is asked again within the grace period too.
    reads = READS.match(step["call"].split("/")[1]) is not None
    deadline = time.monotonic() + grace
    while True:
        status, message, responses = invoke(contract, channel, step, requests, timeout=10)
        problems = []
        if status != step["expect"]:
            problems.append(f"ended {status}" + (f" ({message})" if message else "") + f", the consumer relies on {step['expect']}")
        else:
            expected = step.get("responses") or ([step["response"]] if "response" in step else [])
            if len(responses) < (step.get("min_responses") or 0):
                problems.append(f"{len(responses)} responses, the consumer read {step['min_responses']}")
            if "responses" in step:
                # A stream's messages may differ (a oneof: a position, then a status): each
                # one read must have the shape of one the consumer read.
                for position, got in enumerate(responses):
                    candidates = [shape_problems(want, got, f"response[{position}]") for want in expected]
                    if candidates and all(candidates):
                        problems += min(candidates, key=len)
            elif expected and responses:
                problems += shape_problems(expected[0], responses[0])
            for variable, where in step.get("save", {}).items():
                try:
                    value = lookup(responses, where)
                except (KeyError, IndexError, TypeError):
                    value = None
                if value in (None, ""):
                    problems.append(f"no value at {where} to save as ${{{variable}}} (a later step uses it)")
                else:
                    variables[variable] = value
        waits = reads or (status == "NOT_FOUND" and step["expect"] != "NOT_FOUND")
        if not problems or not waits or time.monotonic() > deadline:
            return problems
        time.sleep(0.2)


def mark_pending(path, results):
    """Writes `pending` (with the reason) into the steps of `path` that failed."""
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    failed = {int(name.split(":")[0].removeprefix("step ")): problem for name, problem, _ in results if problem}
    for number, step in enumerate(document["steps"], 1):
        if number in failed:
            step["pending"] = failed[number]
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
    for number, problem in sorted(failed.items()):
        print(f"    marked pending: {path} step {number}: {problem}")


def command_replay(args):
    contract = Contract(args.descriptor_set)
    servers = Servers(args.server)
    suites, failed = [], 0
    for path in args.files:
        consumer, results, notes = replay_file(contract, servers, path, args.grace)
        if args.mark_pending:
            mark_pending(path, results)
            results = [(name, None, seconds) for name, _, seconds in results]
        bad = [r for r in results if r[1]]
        failed += len(bad)
        mark = "✘" if bad else "✔"
        print(f"{mark} {consumer}: {len(results) - len(bad)}/{len(results)} steps as the consumer relies on them ({path})")
        for name, problem, _ in bad:
            print(f"    ✘ {name}: {problem}")
        for note in notes:
            print(f"    note: {note}")
        suites.append((consumer, results))
    if args.junit:
        write_junit(args.junit, suites)
    sys.exit(1 if failed else 0)


def write_junit(path, suites):
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    for consumer, results in suites:
        failures = sum(1 for r in results if r[1])
        lines.append(f'  <testsuite name="consumer contract: {escape(consumer)}" tests="{len(results)}" failures="{failures}">')
        for name, problem, seconds in results:
            lines.append(f'    <testcase classname="consumer.{escape(consumer)}" name="{escape(name)}" time="{seconds:.3f}">')
            if problem:
                lines.append(f'      <failure message="{escape(problem, {chr(34): "&quot;"})}"/>')
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


# --- stub ---------------------------------------------------------------------------------


def request_difference(recorded, actual, path="request", answered=frozenset()):
    """The first way `actual` differs from a recorded request, or None. `${v1}` (a value from an
    earlier answer) matches a value the stub has answered; `${fresh:...}` (made up by the
    client) one it has not."""
    variable = VARIABLE.fullmatch(recorded) if isinstance(recorded, str) else None
    if variable:
        if not isinstance(actual, str):
            return f"{path} is {json.dumps(actual)}, recorded a value"
        if variable.group(1).startswith("fresh:"):
            return f"{path} is {actual!r}, a value the stub answered, recorded a new one" if actual in answered else None
        return None if actual in answered else f"{path} is {actual!r}, recorded a value from an earlier answer (${{{variable.group(1)}}})"
    if isinstance(recorded, dict):
        if not isinstance(actual, dict):
            return f"{path} is not an object"
        for key in sorted(set(recorded) | set(actual)):
            if key not in actual:
                return f"{path}.{key} is missing"
            if key not in recorded:
                return f"{path}.{key} was not in the recorded request"
            difference = request_difference(recorded[key], actual[key], f"{path}.{key}", answered)
            if difference:
                return difference
        return None
    if isinstance(recorded, list):
        if not isinstance(actual, list) or len(actual) != len(recorded):
            return f"{path} has {len(actual) if isinstance(actual, list) else 'no'} elements, recorded {len(recorded)}"
        for position, (want, got) in enumerate(zip(recorded, actual)):
            difference = request_difference(want, got, f"{path}[{position}]", answered)
            if difference:
                return difference
        return None
    return None if recorded == actual else f"{path} is {json.dumps(actual)}, recorded {json.dumps(recorded)}"


class Stub(grpc.GenericRpcHandler):
    def __init__(self, contract, steps, name):
        self.contract, self.name = contract, name
        self.answered = set()  # every string the stub has sent: what `${v1}` may name
        self.by_method = {}
        for step in steps:
            self.by_method.setdefault(step["call"], []).append(step)

    def answer(self, call, requests, context):
        method = self.contract.methods[call]
        actual = [self.contract.to_json(method.input_type, raw) for raw in requests]
        nearest = None
        for step in self.by_method[call]:
            recorded = step["requests"] if "requests" in step else [step["request"]]
            difference = request_difference(recorded, actual, "requests", self.answered)
            if difference is None:
                if step["expect"] != "OK":
                    context.abort(getattr(grpc.StatusCode, step["expect"]), f"contract stub ({self.name}): as recorded")
                responses = step.get("responses") or ([step["response"]] if "response" in step else [])
                for response in responses:
                    self.answered.update(text for _, text in walk(response))
                return [self.contract.from_json(method.output_type, fill(r, {})) for r in responses]
            nearest = nearest or difference
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      f"contract stub ({self.name}): no recorded {call} request matches: {nearest}")

    def service(self, details):
        call = details.method.lstrip("/")
        if call not in self.by_method:
            return None  # UNIMPLEMENTED
        method = self.contract.methods[call]
        if method.client_streaming and method.server_streaming:
            return grpc.stream_stream_rpc_method_handler(lambda requests, context: iter(self.answer(call, list(requests), context)))
        if method.client_streaming:
            return grpc.stream_unary_rpc_method_handler(lambda requests, context: self.answer(call, list(requests), context)[0])
        if method.server_streaming:
            return grpc.unary_stream_rpc_method_handler(lambda request, context: iter(self.answer(call, [request], context)))
        return grpc.unary_unary_rpc_method_handler(lambda request, context: self.answer(call, [request], context)[0])


def start_stub(contract, steps, name):
    """A stub server on a free loopback port, with reflection (so replay finds its services)."""
    from grpc_reflection.v1alpha import reflection
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((Stub(contract, steps, name),))
    services = sorted({step["call"].split("/")[0] for step in steps})
    reflection.enable_server_reflection(services + [reflection.SERVICE_NAME], server, pool=contract.pool)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def command_stub(args):
    contract = Contract(args.descriptor_set)
    with open(args.contract, encoding="utf-8") as handle:
        document = json.load(handle)
    server, port = start_stub(contract, document["steps"], os.path.basename(args.contract))
    with open(args.port_file + ".tmp", "w", encoding="utf-8") as handle:
        handle.write(f"{port}\n")
    os.rename(args.port_file + ".tmp", args.port_file)
    print(f"contract stub for {document['consumer']} on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def kebab(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def command_consumer_check(args):
    """dronectl, a real consumer, against the stub of its own contract alone (no provider):
    each unary interaction through dronectl's generated command, its exit status the recorded
    status (0, or 64 + the gRPC code), an OK answer of the recorded shape."""
    import subprocess
    contract = Contract(args.descriptor_set)
    with open(args.contract, encoding="utf-8") as handle:
        document = json.load(handle)
    server, port = start_stub(contract, document["steps"], os.path.basename(args.contract))
    checked, failures, variables = 0, [], {}
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    for step in document["steps"]:
        method = contract.methods[step["call"]]
        requests = fill(step["requests"] if "requests" in step else [step["request"]], variables)
        if step.get("given") or method.client_streaming or method.server_streaming:
            # Not dronectl's own unary call: made directly, so the stub has answered what the
            # later steps name.
            invoke(contract, channel, step, requests, timeout=10)
        else:
            service, name = step["call"].split("/")
            command = [args.dronectl, kebab(service.split(".")[-1].removesuffix("Service")), kebab(name),
                       "--server", f"127.0.0.1:{port}", "-d", json.dumps(requests[0]), "--timeout", "10s"]
            run = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
            expected = 0 if step["expect"] == "OK" else 64 + STATUS.index(step["expect"])
            checked += 1
            if run.returncode != expected:
                failures.append(f"{step['call']}: dronectl exited {run.returncode}, expected {expected} ({step['expect']}): {run.stderr.strip()[:300]}")
            elif step["expect"] == "OK" and "response" in step:
                problems = shape_problems(step["response"], json.loads(run.stdout or "{}"))
                if problems:
                    failures.append(f"{step['call']}: dronectl printed an answer without what was recorded: {'; '.join(problems)}")
        recorded = step.get("responses") or ([step["response"]] if "response" in step else [])
        for variable, where in step.get("save", {}).items():
            variables[variable] = lookup(recorded, where)  # the stub answers what was recorded
    server.stop(0)
    print(f"{checked - len(failures)} of {checked} of dronectl's unary interactions answered by the stub of {args.contract} as recorded")
    for failure in failures:
        print(f"    ✘ {failure}")
    sys.exit(1 if failures or not checked else 0)


def command_faults(args):
    """The replay must catch a provider that breaks what a consumer relies on: the stub of a
    contract, unmodified, passes its replay; with one fault at a time it must fail: an answer
    with another status, an answer without a value a later step uses, a stream that ends
    before the messages the consumer read. Each fault goes into the first of the contracts
    that has a step for it."""
    contract = Contract(args.descriptor_set)
    documents = []
    for path in args.contract:
        with open(path, encoding="utf-8") as handle:
            documents.append((path, json.load(handle)))

    def replayed(document, stub_steps):
        server, port = start_stub(contract, stub_steps, document["consumer"])
        try:
            _, results, _ = replay(contract, Servers([f"127.0.0.1:{port}"]), document, grace=0)
        finally:
            server.stop(0)
        return [f"{name}: {problem}" for name, problem, _ in results if problem]

    def without_saved(step):
        response = json.loads(json.dumps(step["response"]))
        path = next(iter(step["save"].values()))
        target = response
        for part in path[1:-1]:
            target = target[part]
        del target[path[-1]]
        return {**step, "response": response}

    kinds = [
        ("answers FAILED_PRECONDITION instead of OK", lambda step: step["expect"] == "OK" and "response" in step,
         lambda step: {**step, "expect": "FAILED_PRECONDITION"}),
        ("answers without the value a later step uses", lambda step: step.get("save") and "response" in step, without_saved),
        ("ends its stream before the messages the consumer read", lambda step: (step.get("min_responses") or 0) > 0,
         lambda step: {**step, "responses": step["responses"][:step["min_responses"] - 1]}),
    ]
    failures, used = 0, set()
    for description, applies, fault in kinds:
        found = next(((path, document, i) for path, document in documents for i, step in enumerate(document["steps"])
                      if not step.get("given") and applies(step)), None)
        if found is None:
            failures += 1
            print(f"✘ no contract has a step to check this fault on: a provider that {description}")
            continue
        path, document, index = found
        if path not in used:
            used.add(path)
            unmodified = replayed(document, document["steps"])
            if unmodified:
                failures += 1
                print(f"✘ the unmodified stub of {path} fails its own replay: {unmodified[0]}")
            else:
                print(f"✔ the unmodified stub of {path} passes its replay")
        broken = list(document["steps"])
        broken[index] = fault(broken[index])
        caught = replayed(document, broken)
        what = f"{path} step {index + 1} ({document['steps'][index]['call']}) {description}"
        if caught:
            print(f"✔ fault caught: {what}: {caught[0]}")
        else:
            failures += 1
            print(f"✘ fault not caught: {what}")
    sys.exit(1 if failures else 0)


# --- coverage -----------------------------------------------------------------------------


def command_coverage(args):
    contract = Contract(args.descriptor_set)
    covered = {}
    for path in args.files:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
        for step in document["steps"]:
            if not step.get("given") and not step.get("pending"):
                covered.setdefault(step["call"], set()).add(document["consumer"])
    missing = [name for name in contract.contract_methods() if name not in covered]
    total = len(contract.contract_methods())
    print(f"{total - len(missing)} of {total} RPCs have a consumer contract interaction")
    for name in missing:
        print(f"    ✘ {name}: no consumer's contract calls it (record it from a consumer's test: make contract-record)")
    sys.exit(1 if missing else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "replay", "stub", "coverage", "consumer-check", "faults"):
        command = commands.add_parser(name)
        command.add_argument("--descriptor-set", required=True)
        if name == "build":
            command.add_argument("--recordings", required=True)
            command.add_argument("--out", required=True)
        if name == "replay":
            command.add_argument("--server", action="append", required=True)
            command.add_argument("--junit")
            command.add_argument("--mark-pending", action="store_true",
                                 help="write `pending` into the steps that fail (make contract-record's first replay)")
            command.add_argument("--grace", type=float, default=20.0,
                                 help="seconds a step may take to reach its recorded outcome (state built asynchronously)")
        if name == "faults":
            command.add_argument("--contract", action="append", required=True)
        if name in ("stub", "consumer-check"):
            command.add_argument("--contract", required=True)
        if name == "stub":
            command.add_argument("--port-file", required=True)
        if name == "consumer-check":
            command.add_argument("--dronectl", required=True)
        if name in ("replay", "coverage"):
            command.add_argument("files", nargs="+")
    args = parser.parse_args()
    {"build": command_build, "replay": command_replay, "stub": command_stub, "coverage": command_coverage,
     "consumer-check": command_consumer_check, "faults": command_faults}[args.command](args)


if __name__ == "__main__":
    main()
