"""State a Rasa node keeps beside an object (a tracker's cached states, an endpoint's kept HTTP
sessions) that must not travel with it: copies and pickles of the object start without it."""
from __future__ import annotations


class NodeLocal:
    """Mixin for a container class: a copy, deep copy or unpickled copy is a new empty one."""

    def __copy__(self):
        return type(self)()

    def __deepcopy__(self, _memo: dict):
        return type(self)()

    def __reduce__(self) -> tuple:
        return type(self), ()
