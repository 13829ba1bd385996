"""offload: a self-hosted engine for durable background jobs and workflows.

The package root exposes only the client; the engine lives in submodules and
needs the ``engine`` extra.
"""

from offload.client import AsyncClient, Client
from offload.errors import ClientError, OffloadError

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "ClientError", "OffloadError", "__version__"]
