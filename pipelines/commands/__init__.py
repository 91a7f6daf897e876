"""Subcommands of `mlgate`, one module per group; listed in pipelines.cli.COMMANDS."""
