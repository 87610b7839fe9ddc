"""The `kdviz` command line: `main(argv) -> int`, one module per subcommand group."""

from kdviz.cli.main import main

__all__ = ["main"]
