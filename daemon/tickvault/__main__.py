"""`python -m tickvault` and the `tickvault` command: Arrow's memory pool is chosen before
anything imports pyarrow (`allocator`), then the CLI runs."""

import sys

from tickvault import allocator


def main() -> int:
    """The CLI's exit code (`tickvault.cli.main`)."""
    allocator.choose_pool()
    from tickvault.cli import main as cli_main  # imports pyarrow: after the pool is chosen

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
