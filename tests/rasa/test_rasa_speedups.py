"""The ``graph``, ``http`` and ``tfcall`` Rasa runtime speed-ups under the Rasa environment
(scenarios in speedups_checks.py): the graph replayed without dask calls the same nodes in the
same order and returns the same outputs and errors as Rasa's DaskGraphRunner; Rasa's
action-server calls reuse one connection, with the same answers, headers and errors, and recover
from an idle pool and a restarted server; a traced prediction function called directly gives
TensorFlow's outputs and errors."""
from __future__ import annotations

import pytest

from tests.rasa.rasa_env import needs_rasa_env, run_checks

pytestmark = needs_rasa_env


@pytest.fixture(scope="module")
def seen() -> dict:
    return run_checks("speedups_checks.py", timeout=300)


def test_graph_runs_as_dask_runs_it(seen):
    assert seen["graph_patched"] is True
    assert seen["runs_as_dask"] == [True] * 8  # same outputs, same nodes called in the same order
    assert seen["plans"] == 4  # one per (targets, input names)
    assert seen["replayed"] == [2, 2, 3, 5]  # an input that replaces a node: that node is not run


def test_graph_errors_as_dask(seen):
    for stock, patched in seen["errors"]:
        assert stock == patched and stock != "no error"
    assert "clashes with a node name" in seen["errors"][1][1]


def test_action_calls_reuse_one_connection(seen):
    assert seen["stock_connections"] == 2  # Rasa: a new connection per call
    assert seen["connections"] == 1
    assert seen["answers"] == [{"events": [], "responses": [{"text": t}]} for t in ("one", "two", "three")]
    assert seen["headers"] == ["Bearer s3cret"]


def test_action_call_errors_and_concurrency_as_before(seen):
    assert seen["rejection"] == [400, {"action_name": "x", "error": "no"}]
    assert seen["concurrent"] is True and seen["concurrent_connections"] == 20  # no connection limit


def test_idle_connections_go_and_a_restarted_server_is_reached(seen):
    assert seen["after_idle"] == [False, False]  # a new connection after the keep-alive, then reused
    assert seen["after_restart"] == {"events": [], "responses": [{"text": "restarted"}]}
    assert seen["copies_without_sessions"] == [True, True]
    assert seen["closed"] == 1 and seen["after_close"] == {"events": [], "responses": [{"text": "reopened"}]}


def test_action_call_bodies_encode_as_json_dumps(seen):
    assert seen["bodies_as_json_dumps"] == [True] * 8


def test_direct_tf_call_gives_tensorflows_outputs(seen):
    assert seen["tfcall_same"] == [True] * 5 and seen["tfcall_one_graph"] is True
    assert seen["tfcall_direct"] == 5  # all five batches took the direct call
    # wrong width, wrong arity: TensorFlow's error either way; tensors, float64: TensorFlow's path
    assert seen["tfcall_odd_inputs"][0][0] == seen["tfcall_odd_inputs"][0][1] != "ok"
    assert seen["tfcall_odd_inputs"][1][0] == seen["tfcall_odd_inputs"][1][1] != "ok"
    assert [pair[0] == pair[1] for pair in seen["tfcall_odd_inputs"][2:]] == [True, True]
