"""Training pieces: losses (and, later, data, loop and schedules)."""
