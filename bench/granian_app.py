"""The offload app for granian (bench/server_ab.sh): ``offload dev`` settings, port and
data dir from ``GPORT`` / ``GDIR``. Run: ``granian --interface asgi granian_app:app``."""

import os
from pathlib import Path

from offload.app import create_app
from offload.config import from_env

app = create_app(from_env(mode="dev", port=int(os.environ["GPORT"]),
                          data_dir=Path(os.environ["GDIR"])))
