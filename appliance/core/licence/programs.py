"""The programs a licence can grant: the one list of their names, with the name people see.

A program is a feature a contract sells; a licence lists the programs it includes,
and the provider assigns them to tenants. A licence may name programs missing here
(a newer vendor catalogue): they are shown under their own name but gate nothing.
"""

from __future__ import annotations

PROGRAM_TITLES = {
    "webchat": "Web chat",
    "messengers": "Messengers (webhooks)",
    "email": "E-mail",
    "voice": "Voice / IVR connector",
    "chatbot": "Chatbot",
    "analytics": "Analytics",
    "api": "API",
}
KNOWN_PROGRAMS = tuple(PROGRAM_TITLES)
