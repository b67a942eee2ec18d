"""Passwords: argon2id hashing (argon2-cffi's RFC 9106 low-memory profile) and the policy.

The policy follows NIST SP 800-63B: a minimum length, and a refusal of passwords that
are common, breached, repetitive or sequential, checked offline against a list shipped
with the app (appliance/web/data/common-passwords.txt). No composition rules: they make
passwords harder to remember and no harder to guess.
"""

from __future__ import annotations

import functools
import itertools
import re
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

MIN_LENGTH = 10
MAX_LENGTH = 200
# A common word with a few digits or signs around it ("Password2024!") is as weak as the word.
_AFFIX = re.compile(r"^[\W\d_]{0,4}(.*?)[\W\d_]{0,4}$")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("appliance.web").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines() if line and not line.startswith("#"))


def _is_run(text: str) -> bool:
    """One character repeated, or a sequence with a constant step ("abcdefghij", "9876543210")."""
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    return len(steps) <= 1 and (not steps or abs(next(iter(steps))) <= 1)


def check_strength(password: str) -> str | None:
    """None for an acceptable password, else the reason, phrased as what to do instead."""
    meaningful = re.sub(r"\s+", " ", password or "").strip()
    if len(meaningful) < MIN_LENGTH:
        return (f"Passwords need at least {MIN_LENGTH} characters (spaces at the ends and runs of spaces "
                "do not count); a few unrelated words make a good one.")
    if len(password) > MAX_LENGTH:
        return f"Passwords can have at most {MAX_LENGTH} characters."
    folded = meaningful.casefold()
    core = _AFFIX.match(folded).group(1)
    common = common_passwords()
    if folded in common or folded.replace(" ", "") in common or (core and core in common):
        return "That password is one of the most common ones attackers try first; choose another."
    if len(set(folded)) < 4 or _is_run(folded) or _is_run(folded.replace(" ", "")):
        return "That password repeats or counts up characters; choose one that is less predictable."
    return None
