"""Benchmarks: rotation downtime on the testbed, slash-command ack latency (see README.md)."""
