"""Kubernetes object names for DomainMigrations, made from libvirt domain names.

libvirt takes nearly any string as a domain name (`Web_DB.1`, capitals, unicode, hundreds of
characters); Kubernetes takes a DNS-1123 subdomain. The domain itself stays verbatim in the spec;
only the object's name is derived, and it is kept to what a DNS-1123 label allows too, so it also
fits where a name becomes a label value or a Service-like name.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

SUBDOMAIN_MAX = 253
LABEL_MAX = 63
# The API server appends 5 random characters to a generateName, and itself cuts the prefix to
# 58 (63 - 5); a prefix within 58 is used as given, so the names always fit a DNS-1123 label.
PREFIX_MAX = LABEL_MAX - 5
HASH_LEN = 8

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_INVALID_RUN = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    """Lower-case ASCII letters and digits, every other run of characters one '-'; '' if none are left."""
    # Accents come off first (é to e) rather than the whole letter turning into a '-'.
    folded = unicodedata.normalize("NFKD", text.casefold()).encode("ascii", "ignore").decode()
    return _INVALID_RUN.sub("-", folded).strip("-")


def generate_name(domain: str, destination: str) -> str:
    """A generateName prefix `<domain>-to-<destination>-`, valid for any domain and host name.

    When characters had to be dropped altogether (the prefix was cut short, or no valid character
    was left), a hash of the originals goes in, so that two such domains do not share one prefix.
    """
    domain_part, destination_part = slug(domain), slug(destination)
    base = f"{domain_part or 'domain'}-to-{destination_part or 'host'}"
    lossy = not domain_part or not destination_part or len(base) + 1 > PREFIX_MAX
    if not lossy:
        return f"{base}-"
    digest = hashlib.sha256(f"{domain}\0{destination}".encode()).hexdigest()[:HASH_LEN]
    base = base[: PREFIX_MAX - HASH_LEN - 2].rstrip("-")
    return f"{base}-{digest}-"


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a DomainMigration's metadata.name, in the API server's words; None if it can."""
    if len(name) > SUBDOMAIN_MAX:
        return f"must be no more than {SUBDOMAIN_MAX} characters (got {len(name)})"
    if not _SUBDOMAIN.fullmatch(name):
        return (
            f"{name!r} is not a lowercase RFC 1123 subdomain: it must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character"
        )
    return None
