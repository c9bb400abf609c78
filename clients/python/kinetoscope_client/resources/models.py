"""`client.models`: the models the server runs (GET /v1/models)."""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Union

from .._core import Flow, quote_id
from ..types import Model, ModelList

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["Models", "AsyncModels"]


class _ModelsCore:
    def __init__(self, client: Union["Client", "AsyncClient"]) -> None:
        self._client = client

    def _list(self) -> Flow[List[Model]]:
        models = yield from self._client._get_json("/v1/models", ModelList)
        return models.data

    def _retrieve(self, model_id: str) -> Flow[Model]:
        return (yield from self._client._get_json(f"/v1/models/{quote_id(model_id)}", Model))


class Models(_ModelsCore):
    _client: "Client"

    def list(self) -> List[Model]:
        """Every served model: id, tasks, sizes, window frames, classes, samplers, backend."""
        return self._client._run(self._list())

    def retrieve(self, model_id: str) -> Model:
        """One model by id (NotFoundError if the server does not run it)."""
        return self._client._run(self._retrieve(model_id))


class AsyncModels(_ModelsCore):
    _client: "AsyncClient"

    async def list(self) -> List[Model]:
        """See `Models.list`."""
        return await self._client._run(self._list())

    async def retrieve(self, model_id: str) -> Model:
        """See `Models.retrieve`."""
        return await self._client._run(self._retrieve(model_id))
