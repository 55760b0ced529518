"""The errors popdl reports to its users: one line each, naming the cause.

This module is the bottom of the package (it imports nothing of popdl), so
that every module can raise these.  The command line (:mod:`popdl.cli`)
prints them as one line on stderr and exits with status 1.

* :class:`ConfigError`: a configuration problem (a key, a prior, a graph, a
  missing simulator program), naming the config key.
* :class:`DataError`: observed input data that popdl cannot use (a VCF, a
  popmap, an alignment, an ``observed.npz``), naming the file.

:class:`popdl.io.OutputError` (an output popdl refuses or fails to write) and
:class:`popdl.model_io.ModelError` (a damaged model folder) are
:class:`PopdlError` too.
"""

from __future__ import annotations

import reprlib

__all__ = ["PopdlError", "ConfigError", "DataError", "MAX_MESSAGE", "shown"]

#: Longest error message; longer ones (a huge value shown) are cut.
MAX_MESSAGE = 2000


class PopdlError(ValueError):
    """A problem popdl describes in one line: line breaks in the message become
    spaces, and a message longer than :data:`MAX_MESSAGE` is cut."""

    def __init__(self, message: object = "", *args):
        text = " ".join(str(message).splitlines())  # one line, whatever the message quotes
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 3] + "..."
        super().__init__(text, *args)


class ConfigError(PopdlError):
    """A configuration problem, described in one line."""


class DataError(PopdlError):
    """A problem with observed input data, described in one line."""


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlist = _short.maxtuple = _short.maxdict = _short.maxset = 4
_short.maxlevel = 2


def shown(value) -> str:
    """A short ``repr`` of a value (a config value, a data field), for messages."""
    return _short.repr(value)
