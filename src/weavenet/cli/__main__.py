"""``python -m weavenet.cli``: the ``weave`` command."""

from weavenet.cli.main import main

main()
