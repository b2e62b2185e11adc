"""Schemathesis hooks for Outpost's conformance run: the custom formats the OpenAPI
document uses, so the fuzzer generates values the server must accept."""

import schemathesis
from hypothesis import strategies as st


def gs1_check_digit(body: str) -> str:
    """The GS1 check digit of the digits before it: weights 3, 1, 3, ... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def gtin(length: int) -> st.SearchStrategy[str]:
    body = st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1)
    return body.map(lambda b: b + gs1_check_digit(b))


# GTIN-8, -12, -13 and -14 with a right check digit (the document's `format: gtin`).
schemathesis.openapi.format("gtin", st.one_of(gtin(8), gtin(12), gtin(13), gtin(14)))
