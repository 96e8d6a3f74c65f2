"""homepoll: poll home climate sensors on a schedule and keep every reading in SQLite."""

__version__ = "0.1.0"
