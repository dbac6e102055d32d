"""Transports for the manager's shared HTTP client: `CommManager(transport=...)`.

```python
from xcomm import CommManager
from xcomm.transports import AiohttpTransport

async with CommManager(transport=AiohttpTransport()) as comm:
    await comm.webhook("https://hooks.example.com/T0K3N").send({"text": "hi"})
```

`AiohttpTransport` needs the `fast` extra: `pip install 'xcomm[fast]'`.
"""

from xcomm.transports._aiohttp import AiohttpTransport

__all__ = ["AiohttpTransport"]
