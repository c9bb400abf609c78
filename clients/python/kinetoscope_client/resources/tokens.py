"""`client.tokens`: the model's tokenizer and likelihood over HTTP (POST /v1/tokenize,
/v1/detokenize, /v1/score)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Union

from .._core import Flow
from .._uploads import read_input_video

if TYPE_CHECKING:
    from .._client import AsyncClient, Client

__all__ = ["Tokens", "AsyncTokens"]


class _TokensCore:
    def __init__(self, client: Union["Client", "AsyncClient"]) -> None:
        self._client = client

    def _tokenize(self, input_video: Any, model: Optional[str]) -> Flow[dict]:
        upload = read_input_video(input_video)
        data = {"model": model} if model else None
        response = yield from self._client._request(
            "POST", "/v1/tokenize", files={"input_video": (upload.filename, upload.content, upload.content_type)},
            data=data)
        return response.json()

    def _detokenize(self, tokens: List[int], size: Optional[str], model: Optional[str]) -> Flow[bytes]:
        body = {k: v for k, v in (("tokens", list(tokens)), ("size", size), ("model", model)) if v is not None}
        response = yield from self._client._request("POST", "/v1/detokenize", json=body, headers={"Accept": "*/*"})
        return response.content


    def _score(self, input_video: Any, tokens: Optional[List[int]], model: Optional[str]) -> Flow[dict]:
        if (input_video is None) == (tokens is None):
            raise ValueError("score takes input_video or tokens, exactly one")
        if tokens is not None:
            body = {k: v for k, v in (("tokens", list(tokens)), ("model", model)) if v is not None}
            response = yield from self._client._request("POST", "/v1/score", json=body)
        else:
            upload = read_input_video(input_video)
            response = yield from self._client._request(
                "POST", "/v1/score", files={"input_video": (upload.filename, upload.content, upload.content_type)},
                data={"model": model} if model else None)
        return response.json()


class Tokens(_TokensCore):
    _client: "Client"

    def tokenize(self, input_video: Any, *, model: Optional[str] = None) -> dict:
        """A video (path, bytes or binary file) -> `{"model", "token_grid", "vocab_size", "tokens"}`
        of its first window."""
        return self._client._run(self._tokenize(input_video, model))

    def detokenize(self, tokens: List[int], *, size: Optional[str] = None, model: Optional[str] = None) -> bytes:
        """t*h*w token ids -> an MP4 (at `size`, through the super-resolution cascade)."""
        return self._client._run(self._detokenize(tokens, size, model))

    def score(self, input_video: Any = None, *, tokens: Optional[List[int]] = None,
              model: Optional[str] = None) -> dict:
        """A video (path, bytes or binary file) or its tokens -> `{"model", "log_likelihood",
        "bits_per_token", "per_latent_frame"}`: its exact log-likelihood (nats) under the
        model's autoregressive prior. Lower bits per token: more like what the model learned."""
        return self._client._run(self._score(input_video, tokens, model))


class AsyncTokens(_TokensCore):
    _client: "AsyncClient"

    async def tokenize(self, input_video: Any, *, model: Optional[str] = None) -> dict:
        """See `Tokens.tokenize`."""
        return await self._client._run(self._tokenize(input_video, model))

    async def detokenize(self, tokens: List[int], *, size: Optional[str] = None, model: Optional[str] = None) -> bytes:
        """See `Tokens.detokenize`."""
        return await self._client._run(self._detokenize(tokens, size, model))

    async def score(self, input_video: Any = None, *, tokens: Optional[List[int]] = None,
                    model: Optional[str] = None) -> dict:
        """See `Tokens.score`."""
        return await self._client._run(self._score(input_video, tokens, model))
