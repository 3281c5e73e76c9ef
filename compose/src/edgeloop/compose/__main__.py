"""``python -m edgeloop.compose`` runs the `edgeloop` command."""

from edgeloop.compose.cli import main

main()
