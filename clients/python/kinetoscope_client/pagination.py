"""Pages of GET /v1/videos that fetch the next page on demand (cursor: `after` = the last id).

    page = client.videos.list(limit=20)      # one request
    page.data                                # this page's jobs
    for video in page: ...                   # every job, fetching further pages as needed

    page = await aclient.videos.list()       # async: await for the first page ...
    async for video in aclient.videos.list(): ...   # ... or iterate everything directly
"""
from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable, Generator, Iterator, List, Optional

from .types import Video, VideoList

__all__ = ["SyncPage", "AsyncPage", "AsyncPager"]


class _Page:
    def __init__(self, page: VideoList) -> None:
        self.page = page

    @property
    def data(self) -> List[Video]:
        return self.page.data

    @property
    def has_more(self) -> bool:
        return self.page.has_more

    @property
    def next_after(self) -> Optional[str]:
        """The cursor of the next page, or None on the last page."""
        if not (self.page.has_more and self.page.data):
            return None
        return self.page.last_id or self.page.data[-1].id

    def has_next_page(self) -> bool:
        return self.next_after is not None

    def __len__(self) -> int:
        return len(self.page.data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(data=[{len(self.data)} videos], has_more={self.has_more})"


class SyncPage(_Page):
    def __init__(self, page: VideoList, fetch: Callable[[str], "SyncPage"]) -> None:
        super().__init__(page)
        self._fetch = fetch

    def get_next_page(self) -> "SyncPage":
        after = self.next_after
        if after is None:
            raise RuntimeError("no next page: check has_next_page() first")
        return self._fetch(after)

    def iter_pages(self) -> Iterator["SyncPage"]:
        page: SyncPage = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = page.get_next_page()

    def __iter__(self) -> Iterator[Video]:  # type: ignore[override]
        for page in self.iter_pages():
            yield from page.data


class AsyncPage(_Page):
    def __init__(self, page: VideoList, fetch: Callable[[str], Awaitable["AsyncPage"]]) -> None:
        super().__init__(page)
        self._fetch = fetch

    async def get_next_page(self) -> "AsyncPage":
        after = self.next_after
        if after is None:
            raise RuntimeError("no next page: check has_next_page() first")
        return await self._fetch(after)

    async def iter_pages(self) -> AsyncIterator["AsyncPage"]:
        page: AsyncPage = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = await page.get_next_page()

    async def __aiter__(self) -> AsyncIterator[Video]:
        async for page in self.iter_pages():
            for video in page.data:
                yield video


class AsyncPager:
    """What `AsyncClient.videos.list()` returns: await it for the first `AsyncPage`, or
    `async for` over it for every job across pages."""

    def __init__(self, first: Callable[[], Awaitable[AsyncPage]]) -> None:
        self._first = first

    def __await__(self) -> Generator[object, None, AsyncPage]:
        return self._first().__await__()

    async def __aiter__(self) -> AsyncIterator[Video]:
        page = await self._first()
        async for video in page:
            yield video
