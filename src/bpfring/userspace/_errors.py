"""Errors of the user-space runtime: they are part of bpfring's one
exception tree (:mod:`bpfring.errors`); re-exported here for the runtime."""

from __future__ import annotations

from ..errors import UserLoadError, UserRuntimeError

__all__ = ["UserLoadError", "UserRuntimeError"]
