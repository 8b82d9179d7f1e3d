"""Rasa runtime speed-up ``graph``: the model's graph is run without dask after its first run.

Rasa runs its model graph twice or more per message (once for the NLU, once per prediction of the
next action) with ``DaskGraphRunner.run``: each run derives the part of the graph the targets
need (``minimal_graph_schema``, a recursive walk), builds a dask graph, lets dask order it and
runs it through dask's local scheduler, one node after the other. For the same targets and input
names that work gives the same plan every time. So the first run for a (targets, input names)
pair still goes through dask, with each node's call recorded in the order dask made it; later
runs call the same nodes, in the same order, with the same arguments (each node gets the
``(name, output)`` pairs of the nodes it needs, or the bare name of one that has no output, as
dask passes them) and return the same ``{target: output}``. Errors are raised as before
(``RuntimeError`` as ``GraphRunError``).

Registered in ``bot/rasa_runtime.py`` under the name ``graph`` of ``RASA_RUNTIME_SPEEDUPS``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# Attribute of a runner: its recorded plans, (targets, input names) -> Plan.
PLANS = "_powerdesk_plans"


def install() -> None:
    """Replaces ``DaskGraphRunner.run`` by a version that replays the plan dask made first."""
    from rasa.engine.exceptions import GraphRunError
    from rasa.engine.runner.dask import DaskGraphRunner

    dask_run = DaskGraphRunner.run

    def run(self: DaskGraphRunner, inputs: Optional[dict[str, Any]] = None,
            targets: Optional[list[str]] = None) -> dict[str, Any]:
        run_targets = list(targets if targets else self._graph_schema.target_names)
        key = (tuple(run_targets), tuple(inputs or ()))
        plans = self.__dict__.setdefault(PLANS, {})
        plan = plans.get(key)
        if plan is None:
            plan, result = record_plan(self, dask_run, inputs, targets)
            plans[key] = plan
            return result
        values: dict[str, Any] = {}
        for name, value in (inputs or {}).items():
            if isinstance(value, str) and (value in plan.node_names or value in values):
                raise GraphRunError(
                    f"Input value '{value}' clashes with a node name. Make sure that none of the input names "
                    f"passed to the `run` method are the same as node names in the graph schema.")
            values[name] = (name, value)
        try:
            for name, node, needs in plan.steps:
                values[name] = node(*(values.get(need, need) for need in needs))
        except RuntimeError as e:
            raise GraphRunError("Error running runner.") from e
        return dict(values[target] for target in run_targets)

    DaskGraphRunner.run = run


@dataclass
class Plan:
    """The nodes dask called for one (targets, input names), in its order: (name, node, needs);
    and the names of the nodes of that part of the graph."""

    steps: list[tuple[str, Any, tuple[str, ...]]] = field(default_factory=list)
    node_names: frozenset[str] = frozenset()


def record_plan(runner: Any, dask_run: Any, inputs: Optional[dict[str, Any]],
                targets: Optional[list[str]]) -> tuple[Plan, dict[str, Any]]:
    """Runs the graph through dask (``dask_run``), recording which node dask called when and
    with which needs; returns (the plan, the run's result)."""
    plan = Plan()
    nodes = runner._instantiated_nodes

    class Recording:
        """Stands for a node in the dask graph; records the call and calls the node."""

        def __init__(self, name: str, node: Any, needs: tuple[str, ...]) -> None:
            self.name, self.node, self.needs = name, node, needs

        def __call__(self, *args: Any) -> Any:
            plan.steps.append((self.name, self.node, self.needs))
            return self.node(*args)

    def build(schema: Any) -> dict[str, Any]:
        plan.node_names = frozenset(schema.nodes)
        return {name: (Recording(name, nodes[name], tuple(node.needs.values())), *node.needs.values())
                for name, node in schema.nodes.items()}

    runner._build_dask_graph = build
    try:
        result = dask_run(runner, inputs, targets)
    finally:
        del runner._build_dask_graph
    return plan, result
