"""xcomm: asyncio-native messaging over email, SMS, chat and sockets through one API."""

from xcomm._version import __version__
