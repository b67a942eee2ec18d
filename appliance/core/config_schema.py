"""Checking settings against a schema: the type of each key's default, plus declared rules.

The schema itself lives in appliance/core/config.py (``DEFAULTS`` and ``RULES`` side
by side); this module only knows how to compare a settings mapping with it and say,
per key, what is wrong and what would be right. It returns problems rather than
raising, so one start-up can report every wrong key at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """What a key's default cannot say about it.

    ``minimum``/``maximum`` bound a number (or a list's items, with ``items``);
    ``choices`` lists the only values allowed; ``check`` returns a problem
    (text) or None; ``values`` makes a section free-form: any key, each value
    checked by that rule; ``types`` widens the accepted types (a phone prefix
    written as a bare number in YAML).
    """

    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None
    check: Callable[[object], str | None] | None = None
    items: Rule | None = None
    values: Rule | None = None
    types: tuple | None = None
    like: object = None  # the type of a free-form section's values, given by an example
    secret: bool = False  # never repeat the value in a message (it may be a password or token)


def between(minimum=None, maximum=None) -> Rule:
    return Rule(minimum=minimum, maximum=maximum)


def one_of(*choices) -> Rule:
    return Rule(choices=tuple(choices))


# Numbers are counts, sizes and durations: below zero makes no sense for any of them,
# so that floor applies wherever a rule does not declare its own.
DEFAULT_MINIMUM = 0


def problems(settings, defaults: dict, rules: dict, prefix: str = "") -> list[str]:
    """Every way ``settings`` (as written in the file) disagrees with the schema, one line each."""
    if not isinstance(settings, dict):
        return [f"{prefix.rstrip('.') or 'the file'}: must be a mapping of settings (key: value lines)"]
    found = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if not isinstance(key, str) or key not in defaults:
            found.append(_unknown(name, key, defaults, prefix))
            continue
        found += check_value(name, value, defaults[key], rules.get(key))
    return found


def check_value(name: str, value, default, rule) -> list[str]:
    """Problems with one key's value (recursing into sections)."""
    if isinstance(rule, dict) or (isinstance(default, dict) and not isinstance(rule, Rule)):
        if not isinstance(value, dict):
            return [f"{name}: must be a section of settings, indented below '{name.rsplit('.', 1)[-1]}:' "
                    f"(for example '{_example(name, default)}'), not {_show(value)}"]
        return problems(value, default, rule or {}, prefix=f"{name}.")
    rule = rule if isinstance(rule, Rule) else Rule()
    if value is None:
        return [f"{name}: has no value: give one, or remove the line to use the default ({_show(default)})"]
    if rule.values is not None:  # a free-form section, e.g. discounts by partner level
        if not isinstance(value, dict):
            return [f"{name}: must be a section of 'name: value' lines, not {_show(value)}"]
        found = []
        for key, item in value.items():
            found += check_value(f"{name}.{key}", item, rule.like, rule.values)
        return found
    wrong = _wrong_type(value, default, rule)
    if wrong:
        return [f"{name}: must be {wrong}, not {_kind(value) if rule.secret else _show(value)}"]
    if isinstance(default, list):
        like = default[0] if default else None
        found = []
        for index, item in enumerate(value):
            found += check_value(f"{name}[{index}]", item, like, rule.items or Rule())
        return found
    return _check_rule(name, value, rule)


def _wrong_type(value, default, rule: Rule) -> str | None:
    """What the value must be when its type is wrong, else None."""
    if rule.types and isinstance(value, rule.types) and not isinstance(value, bool):
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if isinstance(default, float):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "text (put it in quotes)"
    if isinstance(default, list):
        return None if isinstance(value, list) else "a list (one '- item' line each, or [a, b])"
    return None


def _check_rule(name: str, value, rule: Rule) -> list[str]:
    if rule.choices is not None and value not in rule.choices:
        words = [str(c) for c in rule.choices]
        guess = difflib.get_close_matches(str(value), words, n=1, cutoff=0.6)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        return [f"{name}: {_show(value)} is not allowed: use one of {', '.join(words)}{hint}"]
    if isinstance(value, int | float) and not isinstance(value, bool):
        low = DEFAULT_MINIMUM if rule.minimum is None else rule.minimum
        if value < low or (rule.maximum is not None and value > rule.maximum):
            upper = f" and {_number(rule.maximum)}" if rule.maximum is not None else " or more"
            span = f"between {_number(low)}{upper}" if rule.maximum is not None else f"{_number(low)}{upper}"
            return [f"{name}: {_show(value)} is out of range: use {span}"]
    if rule.check is not None:
        problem = rule.check(value)
        if problem:
            return [f"{name}: {problem}"]
    return []


def _unknown(name: str, key, defaults: dict, prefix: str) -> str:
    text = str(key)
    known = list(defaults)
    normal = text.strip().lower().replace("-", "_").replace(" ", "_")
    guess = [k for k in known if k == normal] or difflib.get_close_matches(normal, known, n=1, cutoff=0.6)
    hint = f"did you mean '{prefix}{guess[0]}'?" if guess else ""
    if not hint:  # a key written at the wrong level, e.g. vendor_url outside its sync: section
        elsewhere = [f"{prefix}{k}.{normal}" for k, v in defaults.items() if isinstance(v, dict) and normal in v]
        if elsewhere:
            hint = f"it belongs in a section: did you mean '{elsewhere[0]}'?"
    return f"{name}: unknown setting{'; ' + hint if hint else ''} (correct its name or remove the line)"


def _example(name: str, default) -> str:
    if isinstance(default, dict):
        for key, value in default.items():
            if not isinstance(value, dict | list):
                return f"{name.rsplit('.', 1)[-1]}: {{{key}: {_yaml(value)}}}"
    return f"{name}: {{}}"


def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a section"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value[:60] + ("..." if len(value) > 60 else ""))
    return repr(value)


def _kind(value) -> str:
    """What a value is, without the value (for secrets)."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return _show(value) if isinstance(value, dict | list) else "that value (not shown)"


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
