"""Access rules that name nobody in the gallery.

Schedules and two-factor entry *restrict* the people they name; everyone else is let in on
their face alone, at any time. So a rule whose name is misspelt (``alcie`` for ``alice``), or
that outlived a re-enrolment under another name, silently restricts nobody, and the person it
was written for walks in unrestricted. The door cannot guess what was meant, but it can say so:
at start, after every gallery change and reload (an ``error`` event), and in ``edgeface doctor``.
"""

from __future__ import annotations

from edgeface.config import Config
from edgeface.door.second_factor import EVERYONE
from edgeface.recognition.gallery import Gallery


def rules_naming_strangers(config: Config, gallery: Gallery) -> list[str]:
    """One sentence per rule whose name the gallery does not hold (empty: all is well)."""
    enrolled = set(gallery.identities)
    problems = []
    rules = {
        "recognition.schedules": sorted(config.recognition.schedules),
        "second_factor.required_for": sorted(set(config.second_factor.required_for) - {EVERYONE}),
    }
    for key, names in rules.items():
        for name in names:
            if name not in enrolled:
                problems.append(
                    f"{key} names {name!r}, who is not in the gallery: the rule restricts "
                    "nobody (a misspelt name? enrolled under another?)"
                )
    return problems
