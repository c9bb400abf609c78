"""Engines: one network on one backend (see `base.py`, the interface and `create_engine`).

Importing the package registers the built-in backends: each module below decorates its engine
class with `register_backend`, and none of them imports another or this file.
"""
from server.engines import onnxruntime, tensorrt, torch  # noqa: F401  (registers each backend)
from server.engines.base import Engine, EngineError, EngineOptions, backends, create_engine, register_backend

__all__ = ["Engine", "EngineError", "EngineOptions", "backends", "create_engine", "register_backend"]
