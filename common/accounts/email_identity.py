"""Which account an email address names, and which addresses are accepted at all.

One person, one account: `ada.lovelace+drop1@gmail.com` reaches the same inbox as
`adalovelace@gmail.com`, so for providers that ignore dots or `+tags` in the local part
(EMAIL_DOT_INSENSITIVE_DOMAINS, EMAIL_PLUS_TAG_DOMAINS) the account's uniqueness key drops
them. The address as typed (lowercased) stays the account's `email`, for display and sign-in;
the key is `email_key`, uniquely indexed. Addresses on a disposable-mail domain are refused,
from the maintained `disposable-email-domains` list (about ten thousand domains), never ours.
"""

from __future__ import annotations

from collections.abc import Iterable

from disposable_email_domains import blocklist

from common.platform.errors import EmailNotAccepted

# googlemail.com is gmail.com's other name: one inbox, so one key.
SAME_MAILBOX_DOMAINS = {"googlemail.com": "gmail.com"}


class EmailIdentity:
    """Canonical keys for the providers of the settings' lists."""

    def __init__(self, dot_insensitive: Iterable[str], plus_tags: Iterable[str]) -> None:
        self.dot_insensitive = frozenset(domain.lower() for domain in dot_insensitive)
        self.plus_tags = frozenset(domain.lower() for domain in plus_tags)

    def key(self, email: str) -> str:
        """The account's uniqueness key: case-folded; dots and a `+tag` dropped from the local
        part where the provider ignores them. Pure: the same address always gives the same key."""
        local, at, domain = email.strip().casefold().rpartition("@")
        if not at:
            return email.strip().casefold()
        if domain in self.plus_tags:
            local = local.split("+", 1)[0]
        if domain in self.dot_insensitive:
            local = local.replace(".", "")
        return f"{local}@{SAME_MAILBOX_DOMAINS.get(domain, domain)}"


def is_disposable(email: str) -> bool:
    """Whether the address's domain (or a parent of it) is a disposable-mail domain."""
    domain = email.strip().lower().rpartition("@")[2]
    labels = domain.split(".")
    return any(".".join(labels[i:]) in blocklist for i in range(len(labels) - 1))


def check_accepted(email: str) -> None:
    """EmailNotAccepted (422) for an address on a disposable-mail domain."""
    if is_disposable(email):
        raise EmailNotAccepted(details={"fields": {"email": ["Disposable addresses are not accepted."]}})
