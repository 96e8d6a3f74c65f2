"""Loopback simulators of homepoll's sources, with scripted faults, for tests and the demo."""
