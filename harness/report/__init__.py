"""Report: how results reach people and CI (terminal tables, CI matrices)."""
