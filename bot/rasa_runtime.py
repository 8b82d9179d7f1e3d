"""Speed-ups of the Rasa server process that change no prediction and no stored event.

Installed once by our REST channel (``bot/rest_channel.py``) when Rasa builds its routes, before
the model is loaded. ``RASA_RUNTIME_SPEEDUPS`` in Rasa's environment picks them: ``all``
(default: every one), ``0`` (Rasa untouched), or a comma-separated list of
``validation``, ``states``, ``ted``, ``events``, ``graph``, ``http``, ``tfcall`` (for A/B
measurements: ``python -m bench.rasa_profile``). Each patch replaces work that Rasa 3.6 does
on every turn with the same result obtained more cheaply:

- **The action server's answer is checked against a schema compiled once.** Rasa validates
  every answer of the action server with ``jsonschema.validate``, which first validates the
  schema itself against its meta-schema and compiles a new validator: measured at about 40 % of
  Rasa's CPU in the ``make bench`` conversations. Same schema, same checks, same errors.
- **A tracker's dialogue states are computed once per state of the tracker** (``states``):
  ``bot/rasa_states.py``.
- **TED is not asked when its answer cannot win** (``ted``). Rasa's ensemble takes the most
  confident prediction, ties going to the policy of higher priority (RulePolicy 6, Memoization
  3, TED 1), and TED's confidences never exceed 1.0. So once the rule or memoization policy has
  predicted an action with confidence 1.0 for the same tracker state, TED's prediction cannot
  be chosen, and it contributes no events: TED then returns its default (all zeros) instead of
  running its network. Not skipped when the last action was rejected (the ensemble then zeroes
  that action in every prediction), nor for a TED model that predicts from user text (end to end).
  It relies on the graph running the rule and memoization policies before TED (their node
  order); otherwise TED runs as before.
- **An event's class is looked up once per event name** (``events``). To read an event from
  JSON (the tracker store, the action server's answer), Rasa walks every subclass of ``Event``
  (``inspect.isabstract`` on each) for every single event; the class found for a name is kept.
- **The model's graph runs without dask after its first run** (``graph``):
  ``bot/rasa_graph_runner.py``.
- **Calls to the action server reuse their connections** (``http``): ``bot/rasa_action_http.py``.
- **DIET's and TED's traced prediction graph is called directly** (``tfcall``): ``bot/rasa_tf_call.py``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Optional

from bot import rasa_action_http, rasa_graph_runner, rasa_states, rasa_tf_call

logger = logging.getLogger(__name__)

ENV_SWITCH = "RASA_RUNTIME_SPEEDUPS"
_installed: Optional[tuple[str, ...]] = None

PATCHES = ("validation", "states", "ted", "events", "graph", "http", "tfcall")


def selected() -> tuple[str, ...]:
    """The patches ``RASA_RUNTIME_SPEEDUPS`` asks for (all when unset, none for 0/off/none)."""
    raw = (os.environ.get(ENV_SWITCH) or "all").strip().lower()
    if raw in ("all", "1", "on", "true", "yes"):
        return PATCHES
    if raw in ("0", "off", "none", "false", "no"):
        return ()
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    unknown = [name for name in names if name not in PATCHES]
    if unknown:
        raise ValueError(f"{ENV_SWITCH}: unknown speed-up(s) {unknown}; choose from {list(PATCHES)}, all or 0")
    return names


def install() -> tuple[str, ...]:
    """Applies the selected patches once; returns the names of those in place."""
    global _installed
    if _installed is not None:
        return _installed
    names = selected()
    for name in names:
        {"validation": _patch_action_result_validation, "states": rasa_states.install,
         "ted": _patch_ted_skip, "events": _patch_event_lookup, "graph": rasa_graph_runner.install,
         "http": rasa_action_http.install, "tfcall": rasa_tf_call.install}[name]()
    _installed = names
    logger.info("Rasa runtime speed-ups: %s", ", ".join(names) or "none (Rasa unpatched)")
    return names


# -- the action server's answer ---------------------------------------------------------------

def _patch_action_result_validation() -> None:
    from jsonschema import exceptions, validators
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    schema = RemoteAction.action_response_format_spec()
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        error = exceptions.best_match(validator.iter_errors(result))
        if error is None:
            return True
        error.message += (
            ". Failed to validate Action server response from API, make sure your response from "
            "the Action endpoint is valid. For more information about the format visit "
            f"{DOCS_BASE_URL}/custom-actions")
        raise error

    RemoteAction._validate_action_result = _validate_action_result


# -- TED when the rule or memoization policy is certain -------------------------------------------

# Attribute of a tracker: the predictions of the rule and memoization policies for its current
# state: (number of events, last event, [predictions]).
CERTAIN = "_powerdesk_certain_predictions"


class _Uncopied(tuple):
    """A tuple that copies and pickles of a tracker do not carry."""

    def __copy__(self) -> None:
        return None

    def __deepcopy__(self, _memo: dict) -> None:
        return None

    def __reduce__(self) -> tuple:
        return type(None), ()


def _recorded(tracker: Any) -> list:
    """The rule/memoization predictions made for the tracker's current state."""
    events = tracker.events
    entry = tracker.__dict__.get(CERTAIN)
    if entry and entry[0] == len(events) and entry[1] is (events[-1] if events else None):
        return entry[2]
    return []


def _record(tracker: Any, prediction: Any) -> None:
    events = tracker.events
    predictions = _recorded(tracker) + [prediction]
    tracker.__dict__[CERTAIN] = _Uncopied((len(events), events[-1] if events else None, predictions))


def ted_cannot_win(tracker: Any, ted_policy_priority: int) -> bool:
    """True when a recorded prediction of the rule or memoization policy for the tracker's
    current state has confidence 1.0 and a higher priority than TED, and the last action was not
    rejected."""
    from rasa.shared.core.events import ActionExecuted, ActionExecutionRejected

    certain = [p for p in _recorded(tracker) if p.max_confidence >= 1.0 and p.policy_priority > ted_policy_priority
               and not p.is_end_to_end_prediction]
    if not certain:
        return False
    actions = (e for e in reversed(tracker.events) if isinstance(e, (ActionExecuted, ActionExecutionRejected)))
    last_action = next(actions, None)
    return not isinstance(last_action, ActionExecutionRejected)


def _patch_ted_skip() -> None:
    from rasa.core.policies.memoization import MemoizationPolicy
    from rasa.core.policies.rule_policy import RulePolicy
    from rasa.core.policies.ted_policy import TEDPolicy
    from rasa.shared.nlu.constants import TEXT

    def recording(original: Any) -> Any:
        def predict_action_probabilities(self: Any, tracker: Any, domain: Any, *args: Any, **kwargs: Any) -> Any:
            prediction = original(self, tracker, domain, *args, **kwargs)
            _record(tracker, prediction)
            return prediction
        return predict_action_probabilities

    for cls in (MemoizationPolicy, RulePolicy):
        cls.predict_action_probabilities = recording(cls.__dict__["predict_action_probabilities"])

    ted_predict = TEDPolicy.predict_action_probabilities

    def predict_action_probabilities(self: TEDPolicy, tracker: Any, domain: Any, *args: Any, **kwargs: Any) -> Any:
        if (self.model is not None and not self.only_e2e and TEXT not in self.fake_features
                and ted_cannot_win(tracker, self.priority)):
            return self._prediction(self._default_predictions(domain))
        return ted_predict(self, tracker, domain, *args, **kwargs)

    TEDPolicy.predict_action_probabilities = predict_action_probabilities


# -- event classes by name ------------------------------------------------------------------------

def _patch_event_lookup() -> None:
    from rasa.shared.core.events import Event

    original = Event.resolve_by_type
    found: dict[str, type] = {}

    def resolve_by_type(type_name: str, default: Optional[type] = None) -> Optional[type]:
        cls = found.get(type_name)
        if cls is None:
            cls = original(type_name, default)
            if cls is not None and cls is not default:
                found[type_name] = cls
        return cls

    Event.resolve_by_type = staticmethod(resolve_by_type)


def main() -> None:
    """``python -m bot.rasa_runtime <rasa arguments>``: Rasa's command line with the selected
    speed-ups installed (e.g. ``test core`` on the test stories with them)."""
    import sys

    from rasa.__main__ import main as rasa_main

    install()
    sys.argv = ["rasa", *sys.argv[1:]]
    rasa_main()


if __name__ == "__main__":
    main()
