"""The durable outbox: campaign records that survive crashes and are never sent twice by mistake.

```python
from xcomm.outbox import default_outbox_location, open_outbox

store = open_outbox(default_outbox_location())  # $XCOMM_OUTBOX, or a file in the data dir
await store.open()
try:
    counts = await store.counts("spring-sale")  # {OutboxStatus.SENT: 1200, ...}
finally:
    await store.aclose()
```

- `OutboxStore`: the protocol (see `xcomm.outbox._base` for the exact semantics);
- `SQLiteOutbox`: the default, one WAL-mode SQLite file that worker processes may share;
- `MemoryOutbox`: the reference implementation, for tests;
- `open_outbox(location)`: a store from `"memory://"`, `"sqlite:///path.db"` or a path;
- `xcomm.testing.check_outbox_store(factory)`: the conformance suite every store passes.
"""

from xcomm.outbox._base import (
    CampaignDefinition,
    CampaignStep,
    Completion,
    DeliveryPolicy,
    OutboxRecord,
    OutboxStatus,
    OutboxStore,
    Suppression,
    record_key,
)
from xcomm.outbox._location import default_outbox_location, open_outbox
from xcomm.outbox._memory import MemoryOutbox
from xcomm.outbox._sqlite import SQLiteOutbox

__all__ = [
    "CampaignDefinition",
    "CampaignStep",
    "Completion",
    "DeliveryPolicy",
    "MemoryOutbox",
    "OutboxRecord",
    "OutboxStatus",
    "OutboxStore",
    "SQLiteOutbox",
    "Suppression",
    "default_outbox_location",
    "open_outbox",
    "record_key",
]
