"""Rasa runtime speed-up ``tfcall``: DIET's and TED's compiled prediction function called directly.

Every prediction of DIET (each message) and of TED goes through ``RasaModel._rasa_predict``,
which calls a ``tf.function`` made once with a fixed input signature. TensorFlow's call path
then binds the arguments to the Python signature, converts and checks each input against the
signature, flattens and re-packs the structure, builds a type key for its cache of traced
functions and looks the graph up, on every call (about a sixth of DIET's CPU in the main
thread here). With a fixed signature there is one traced graph. After the first call (which
goes TensorFlow's whole way and traces), the model's function is wrapped: a call whose input is
a flat tuple of numpy arrays (Rasa's batches: some are ``FeatureArray``, a subclass) converts
each array as TensorFlow does (``convert_to_tensor`` with the
signature's dtype as hint), checks it against the signature as TensorFlow does, and runs the
same traced graph (``ConcreteFunction._call_flat`` with its captured inputs, what TensorFlow's
own call path ends in); anything else takes TensorFlow's path. Same graph, same inputs, same
outputs.

Registered in ``bot/rasa_runtime.py`` under the name ``tfcall`` of ``RASA_RUNTIME_SPEEDUPS``.
"""
from __future__ import annotations

from typing import Any


class DirectCall:
    """Stands for a model's ``tf.function`` (``RasaModel._tf_predict_step``): calls its one
    traced graph directly when the input fits the signature, else the function itself."""

    def __init__(self, function: Any) -> None:
        import numpy as np
        from tensorflow.python.framework import ops, tensor_spec

        self.function = function
        self.direct_calls = self.other_calls = 0
        self.concrete = function.get_concrete_function()
        specs = function.input_signature
        self.specs = tuple(specs[0]) if len(specs) == 1 and isinstance(specs[0], (list, tuple)) else None
        if self.specs is None or not all(type(s) is tensor_spec.TensorSpec for s in self.specs):
            self.specs = None
        self._array, self._convert = np.ndarray, ops.convert_to_tensor

    def __call__(self, batch_in: Any, *args: Any, **kwargs: Any) -> Any:
        specs = self.specs
        if (args or kwargs or specs is None or type(batch_in) not in (tuple, list) or len(batch_in) != len(specs)
                or not all(isinstance(value, self._array) for value in batch_in)):
            self.other_calls += 1
            return self.function(batch_in, *args, **kwargs)
        tensors = [self._convert(value, dtype_hint=spec.dtype) for value, spec in zip(batch_in, specs)]
        if not all(spec.is_compatible_with(tensor) for spec, tensor in zip(specs, tensors)):
            self.other_calls += 1
            return self.function(batch_in)   # TensorFlow raises its own error
        self.direct_calls += 1
        concrete = self.concrete
        return concrete._call_flat(tensors, captured_inputs=concrete.captured_inputs)


def install() -> None:
    """Wraps each model's ``_tf_predict_step`` in :class:`DirectCall` after its first call."""
    from rasa.utils.tensorflow.models import RasaModel

    original = RasaModel._rasa_predict

    def _rasa_predict(self: RasaModel, batch_in: Any) -> Any:
        result = original(self, batch_in)
        step = getattr(self, "_tf_predict_step", None)
        if step is not None and not isinstance(step, DirectCall) and not self._run_eagerly:
            self._tf_predict_step = DirectCall(step)
        return result

    RasaModel._rasa_predict = _rasa_predict
