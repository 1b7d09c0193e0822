"""Scheduled jobs (compaction, rollups, retention, team merges) built on ``telemetry``.

Jobs import the library; the library never imports them.
"""
