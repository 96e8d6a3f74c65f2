"""Collectors: one module per source, each mapping its failures into homepoll.errors."""
