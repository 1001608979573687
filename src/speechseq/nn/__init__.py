"""Shared building blocks, independent of any one model family. Imports torch only."""
