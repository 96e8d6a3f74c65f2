"""The Alexa simulator's scripted faults: what each one answers instead of the real thing."""

from __future__ import annotations

from typing import Any

from homepoll.simulator.aqm_data import graphql_error

FAULT_KINDS = (
    "http_401",
    "http_403",
    "http_407",
    "signin_redirect",
    "unauthenticated",
    "forbidden",
    "too_many_requests",
    "http_429",
    "rate_exceeded",
    "http_503",
    "slow",
    "empty_endpoints",
    "unknown_shape",
    "property_error",
    "unreachable",
    "reset",
)

RANDOM_KINDS = (
    "http_503",
    "reset",
    "http_429",
    "too_many_requests",
    "rate_exceeded",
    "property_error",
    "unreachable",
)
"""What ``random(...)`` picks from by default: failures a healthy daemon rides out by itself
(auth faults would raise alerts, ``slow`` would stall a soak run)."""


def early_fault(kind: str | None) -> tuple[int, bytes | dict[str, Any], dict[str, str]] | None:
    """Faults answered at the HTTP level, before cookies are even looked at."""
    if kind in ("http_401", "http_403"):
        return int(kind[-3:]), {"message": "Unauthorized"}, {}
    if kind == "http_407":
        return 407, {"message": "Proxy Authentication Required"}, {"Proxy-Authenticate": "Basic"}
    if kind == "signin_redirect":
        page = (
            b"<!doctype html><html><head><title>Amazon Sign-In</title></head>"
            b"<body><form name='signIn' action='/ap/signin'></form></body></html>"
        )
        location = (
            "https://www.amazon.com/ap/signin?openid.return_to=https%3A%2F%2Falexa.amazon.com"
            "&openid.assoc_handle=amzn_dp_project_dee&sim-secret-query=1"
        )
        return 302, page, {"Location": location, "Content-Type": "text/html; charset=UTF-8"}
    if kind == "http_429":
        return 429, {"message": "Too Many Requests"}, {}
    if kind == "rate_exceeded":
        return 400, {"message": "Rate exceeded"}, {}
    if kind == "http_503":
        page = b"<html><body><h1>503 Service Unavailable</h1></body></html>"
        return 503, page, {"Content-Type": "text/html"}
    return None


def graphql_fault(kind: str | None, session: str = "") -> dict[str, Any] | None:
    """Faults Amazon reports inside an HTTP 200 GraphQL answer; ``forbidden`` quotes the
    request's session cookie back, as issue 11 (item 8) saw Amazon do."""
    if kind == "unauthenticated":
        return {"data": None, "errors": [{"message": "Unauthenticated call", "extensions": {}}]}
    if kind == "forbidden":
        return graphql_error(f"Access denied for session {session}", "FORBIDDEN")
    if kind == "too_many_requests":
        return graphql_error(
            "Too many requests", "UNOFFICIAL_CLIENT_TOO_MANY_REQUESTS", isRetryable=False
        )
    return None
