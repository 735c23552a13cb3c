"""Watching the work: Spark UI / event-log monitoring (:mod:`.monitoring`) and the figures
(:mod:`.plots`)."""
