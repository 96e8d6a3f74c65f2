"""Loopback simulators of the sources homepoll reads, with scripted faults, for tests and the demo."""
