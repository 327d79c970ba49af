"""Subcommand groups of the `scalespace` command line."""
