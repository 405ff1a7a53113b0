"""API keys and tokens that travel in HTTP headers, for the providers that read one from a
MetricTemplate's Secret (Datadog, New Relic, Dynatrace).

Two guards, so that a key cannot reach a message: a key is checked before it is put in a header
(``requests`` would quote a header value it refuses in its error), and an error raised while
asking is rewritten if the backend's answer happened to echo a key back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from serin.ports import InvalidCredentials, ProviderConfig, SerinError

REDACTED = "<redacted>"


def header_credential(config: ProviderConfig, key: str) -> str:
    """The Secret's ``key``, without the surrounding whitespace a Secret made with ``echo`` carries;
    InvalidCredentials (naming the key and the Secret, never the value) when it is missing or holds
    characters an HTTP header cannot carry."""
    value = config.credential(key).strip()
    if not (value.isascii() and value.isprintable()):
        where = f"Secret {config.secret_name}" if config.secret_name else "no secretRef"
        raise InvalidCredentials(f"{config.type}: {key} in {where} has characters an HTTP header cannot carry")
    return value


def redacted(error: SerinError, secrets: Iterable[str]) -> SerinError:
    """``error`` itself, or the same kind of error with every secret in its message replaced.

    Only whole occurrences count (not inside a longer word), so that a key that happens to be
    short does not take letters out of the words around it."""
    message = str(error)
    for secret in secrets:
        if secret:
            message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", REDACTED, message)
    if message == str(error):
        return error
    return type(error)(message)
