"""jobcord: the command-line entry point that ties producers, consumers and storage together."""

__all__: list[str] = []
