"""pgqueue-sync for async applications (asyncio, trio): the same engine, awaited."""
