"""``python -m offload`` runs the CLI."""

from offload.cli import main

main()
