"""Forge adapters: where a repository's pull requests, CI results and merges live."""
