"""``tfcall`` on the real model, under the Rasa environment: every held-out NLU example parsed
twice in one process, DIET's traced graph called through bot/rasa_tf_call.DirectCall and through
TensorFlow's own tf.function call; prints one JSON object on its last line
(tests/rasa/test_rasa_tf_call_model.py). ``python tests/rasa/tf_call_model_checks.py MODEL NLU_DIR``"""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import structlog

from bot import rasa_tf_call


async def compare(model: str, nlu: str) -> dict[str, Any]:
    from rasa.core.agent import Agent
    from rasa.shared.nlu.training_data.loading import load_data

    agent = Agent.load(model)
    texts = [m.get("text") for m in load_data(nlu).training_examples]
    nodes = agent.processor.graph_runner._instantiated_nodes.values()
    diet = next(n._component for n in nodes if type(n._component).__name__ == "DIETClassifier")
    await agent.parse_message("你好")            # the first call takes TensorFlow's path, then wraps
    direct = diet.model._tf_predict_step
    if not isinstance(direct, rasa_tf_call.DirectCall):
        return {"wrapped": False}
    plain = direct.function
    different = []
    for text in texts:
        diet.model._tf_predict_step = direct
        a = await agent.parse_message(text)
        diet.model._tf_predict_step = plain
        b = await agent.parse_message(text)
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            different.append(text)
    return {"wrapped": True, "texts": len(texts), "different": different, "direct_calls": direct.direct_calls,
            "other_calls": direct.other_calls}


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rasa_tf_call.install()
    seen = asyncio.run(compare(sys.argv[1], sys.argv[2]))
    print(json.dumps(seen, ensure_ascii=False))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
