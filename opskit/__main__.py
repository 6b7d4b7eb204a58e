"""Run opskit as ``python -m opskit``."""

from opskit.cli import main

main()
