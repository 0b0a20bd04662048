"""The Node API as a node sees it, in real node processes started by ``dora run``."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import DoraRunner, RunResult

sys.path.insert(0, str(Path(__file__).resolve().parent / "nodes"))
import catalog  # noqa: E402

sys.path.pop(0)


# -- payload types: one dataflow sends the whole catalog ------------------------------------


@pytest.fixture(scope="module")
def types_run(module_dora: DoraRunner) -> RunResult:
    r = module_dora.run(
        """
nodes:
  - id: sender
    path: NODES/types_sender.py
    outputs: [out]
  - id: receiver
    path: NODES/types_receiver.py
    inputs:
      data: {source: sender/out, queue_size: 100}
"""
    )
    assert r.returncode == 0, r.output
    return r


@pytest.fixture(scope="module")
def types_result(types_run: RunResult) -> dict[str, Any]:
    return types_run.result("types")


@pytest.mark.parametrize("case", catalog.names())
def test_payload_arrives_with_equal_type_and_values(types_result: dict, case: str) -> None:
    verdict = types_result["verdicts"].get(case)
    assert verdict is not None, f"{case} never arrived"
    assert verdict["is_arrow"]
    assert verdict["type"] == verdict["expected_type"]
    assert verdict["equal"], verdict


@pytest.mark.parametrize("case", [c for c in catalog.names() if c.endswith("_large")])
def test_large_payload_is_read_in_place_from_shared_memory(types_result: dict, case: str) -> None:
    """Zero copy: every buffer of the received array lies inside a /dev/shm/dora-* mapping."""
    in_shm = types_result["verdicts"][case]["in_shm"]
    assert in_shm and all(in_shm), types_result["verdicts"][case]


@pytest.mark.parametrize(
    "case", ["int_small", "string_small", "bytes_small", "bytearray_reused_small", "raw_ctx_small"]
)
def test_small_payload_travels_inline(types_result: dict, case: str) -> None:
    assert not any(types_result["verdicts"][case]["in_shm"])


def test_events_are_dicts_with_type_id_kind_value_metadata(types_result: dict) -> None:
    events = types_result["events"]
    inputs = [e for e in events if e["type"] == "INPUT"]
    assert len(inputs) == len(catalog.names())
    for e in inputs:
        assert {"type", "id", "kind", "value", "metadata"} <= set(e["keys"])
        assert e["id"] == "data" and e["kind"] == "dora"
    assert events[-2]["type"] == "INPUT_CLOSED" and events[-2]["id"] == "data"
    # then, as dora-rs does, STOP with id ALL_INPUTS_CLOSED ends the stream
    assert (events[-1]["type"], events[-1]["id"]) == ("STOP", "ALL_INPUTS_CLOSED")


def test_metadata_round_trips_with_a_utc_timestamp(types_result: dict) -> None:
    md = types_result["metadata"]
    assert md["values"] == {"case": "metadata", **catalog.METADATA}
    assert md["timestamp_is_datetime"] and md["timestamp_utc"]
    assert 0 <= md["timestamp_age_s"] < 30


# -- the API surface: next(timeout), try_recv, drain, is_empty, recv_async, info, logs -----


@pytest.fixture(scope="module")
def api_run(module_dora: DoraRunner) -> RunResult:
    r = module_dora.run(
        """
nodes:
  - id: feeder
    path: NODES/feeder.py
    outputs: [out]
  - id: probe
    path: NODES/api_probe.py
    inputs:
      data: feeder/out
    outputs:
      - declared_a
      - declared_b
""",
        timeout=40,
    )
    assert r.returncode == 0, r.output
    return r


@pytest.fixture(scope="module")
def api(api_run: RunResult) -> dict[str, Any]:
    return api_run.result("api_probe")


def _input(value: list) -> dict:
    return {"type": "INPUT", "id": "data", "kind": "dora", "value": value}


def test_next_with_timeout_returns_an_error_event(api: dict) -> None:
    assert api["timeout_event"]["type"] == "ERROR"
    assert api["timeout_event"]["error"]
    assert 0.19 <= api["timeout_took_s"] < 2


def test_try_recv_drain_and_is_empty(api: dict) -> None:
    assert api["empty_at_start"] is True
    assert api["try_recv_empty"] is None
    assert api["empty_after_burst"] is False
    assert api["try_recv"] == _input([1])
    assert api["drain"] == [_input([2]), _input([3])]
    assert api["empty_after_drain"] is True
    assert api["drain_when_empty"] == []


def test_recv_async_does_not_block_the_event_loop(api: dict) -> None:
    assert api["recv_async_timeout"]["type"] == "ERROR"
    assert api["recv_async"] == _input([4])
    assert api["loop_ticks"] >= 5  # the loop kept running while recv_async waited


def test_stream_ends_with_input_closed_stop_then_none(api: dict) -> None:
    assert api["closed"] == {"type": "INPUT_CLOSED", "id": "data", "kind": "dora"}
    assert api["all_closed"] == {"type": "STOP", "id": "ALL_INPUTS_CLOSED", "kind": "dora"}
    assert api["end"] is None
    assert api["after_end"] is None


def test_node_config_descriptor_and_dataflow_id(api: dict) -> None:
    assert api["node_config"]["inputs"] == {"data": "feeder/out"}
    assert api["node_config"]["outputs"] == ["declared_a", "declared_b"]
    assert api["descriptor_node_ids"] == ["feeder", "probe"]
    assert uuid.UUID(api["dataflow_id"])


def test_undeclared_output_error_names_the_declared_ones(api: dict) -> None:
    err = api["undeclared_error"]
    assert err is not None
    assert "undeclared" in err and "declared_a" in err and "declared_b" in err


def test_node_log_and_python_logging_reach_the_log_file(api_run: RunResult) -> None:
    log = api_run.log("probe")
    assert "log via node.log" in log
    assert "log via logging.info" in log
    assert "log via a named logger" in log


# -- concurrency, services, delivery at exit --------------------------------------------------


def test_two_threads_calling_next_get_every_event_exactly_once(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: snd
    path: NODES/send_seq.py
    outputs: [out]
    env: {COUNT: 300, LARGE_EVERY: 10}
  - id: rcv
    path: NODES/threads_receiver.py
    inputs:
      x: {source: snd/out, queue_size: 1000}
"""
    )
    assert r.returncode == 0, r.output
    res = r.result("threads")
    both = res["got"]["a"] + res["got"]["b"]
    assert sorted(both) == list(range(300))  # none lost, none twice
    assert res["got"]["a"] == sorted(res["got"]["a"])
    assert res["got"]["b"] == sorted(res["got"]["b"])
    assert sorted(res["other"]["a"] + res["other"]["b"]) == ["INPUT_CLOSED", "STOP"]


def test_service_request_id_round_trip(dora: DoraRunner) -> None:
    r = dora.run(
        """
nodes:
  - id: client
    path: NODES/service_client.py
    inputs:
      response: server/response
    outputs: [request]
  - id: server
    path: NODES/service_server.py
    inputs:
      request: client/request
    outputs: [response]
"""
    )
    assert r.returncode == 0, r.output
    res = r.result("service")
    sent = res["sent"]
    assert len(sent) == 3
    for rid in sent:
        assert uuid.UUID(rid)
    for resp in res["responses"]:
        i = sent[resp["request_id"]]
        assert resp["n"] == i
        assert resp["value"] == [2 * i, 2 * (i + 1)]


@pytest.mark.parametrize("policy", ["backpressure", "drop_oldest"])
def test_every_message_sent_before_exit_is_delivered(dora: DoraRunner, policy: str) -> None:
    size = 10 if policy == "backpressure" else 1000
    r = dora.run(
        f"""
nodes:
  - id: snd
    path: NODES/send_seq.py
    outputs: [out]
    env: {{COUNT: 500, LARGE_EVERY: 50}}
  - id: rcv
    path: NODES/collect.py
    inputs:
      x: {{source: snd/out, queue_size: {size}, queue_policy: {policy}}}
"""
    )
    assert r.returncode == 0, r.output
    events = r.result("collect")["events"]
    assert [e[2] for e in events if e[0] == "INPUT"] == list(range(500))
    assert [e[0] for e in events[-2:]] == ["INPUT_CLOSED", "STOP"]
