"""Subcommands of `mlgate`, one module per group; listed in mlgate.pipelines.cli.main.COMMANDS."""
