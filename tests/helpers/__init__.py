"""Helpers shared by several test files (never import one test file from another)."""
