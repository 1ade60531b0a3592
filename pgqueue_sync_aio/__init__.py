"""pgqueue-sync for async applications (asyncio, trio): the same engine, awaited."""

from .qm import AsyncQueueManager, HandlerAbandoned
from .queries import AsyncQueries
from .tasks import AsyncTask

__all__ = ["AsyncQueries", "AsyncQueueManager", "AsyncTask", "HandlerAbandoned"]
