"""Every custom action of the domain is registered by the action server, and nothing else.

rasa-sdk registers the ``Action`` subclasses of every module of the ``actions`` package
(``python -m actions``); a module moved, split or renamed must keep each ``name()``, which is
the contract with the Rasa domain.
"""
from tests.nlu.rasa_env import run_in_rasa_env
from tests.support.actions import load_domain


def test_registered_actions_are_exactly_the_domain_actions():
    registered = run_in_rasa_env(
        """
        import json, logging
        logging.disable(logging.CRITICAL)
        from rasa_sdk.executor import ActionExecutor
        executor = ActionExecutor()
        executor.register_package("actions")
        print(json.dumps(sorted(executor.actions)))
        """
    )
    assert set(registered) == set(load_domain()["actions"])
