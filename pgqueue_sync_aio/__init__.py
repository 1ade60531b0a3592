"""pgqueue-sync for async applications (asyncio, trio): the same engine, awaited."""

from .qm import AsyncQueueManager, HandlerAbandoned
from .queries import AsyncQueries

__all__ = ["AsyncQueries", "AsyncQueueManager", "HandlerAbandoned"]
