"""Agent task families: what the scheduler starts for entries and hosts, and what it does when they finish."""
