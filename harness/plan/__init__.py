"""Upgrade-path rules: pure functions over refs, versions and tags (no I/O but the release list)."""
