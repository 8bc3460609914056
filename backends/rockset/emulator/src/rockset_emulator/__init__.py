"""A local Rockset emulator: the REST subset that chat histories use, over real HTTP.

Rockset's cloud service shut down in 2024. This server lets the real ``rockset``
2.1.2 SDK run unchanged on 127.0.0.1, with faults and eventual consistency on demand::

    with RocksetEmulator(api_key="test-key") as emu:
        rs = emu.client()
        rs.Collections.create_s3_collection(name="chat")

Choices where the real service's behaviour is unknown or irrelevant:

- Workspaces exist implicitly; any valid name works.
- A write (add, patch or delete documents) to a collection that is not READY yet
  gets 400 NOT_READY (the SDK raises ``BadRequestException``).
- A query naming a missing collection gets 400 QUERY_ERROR, "Collection 'c' not
  found in workspace 'ws'".
- Only the SQL shapes listed in :mod:`.sql` are answered; any other statement gets
  400 QUERY_ERROR naming where matching stopped.
- Patch ops COPY, MOVE, TEST and INCREMENT get 400 INVALIDINPUT (unsupported).
- Offsets are ``f1:0:0:0:<n>``, one ``n`` per write request, shared by all collections.
- Documents hold only the fields written: no ``_event_time`` or ``_meta`` is added.
"""

from .server import RocksetEmulator

__all__ = ["RocksetEmulator"]
