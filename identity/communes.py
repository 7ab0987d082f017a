"""The 24 communes of Nantes Métropole, shipped as data (identity/data/communes-nantes-metropole.csv).

A resident's postal address names its commune: one of these, chosen from a list, with the
postcode checked against it, or another French commune typed in. The table is read once,
on first use, and never changes while the process runs. Public API for every app
(profiles will read a resident's commune through it):

- `communes()`: every commune, sorted by name;
- `commune_by_code(insee_code)`: one commune, or None;
- `commune_for_address(locality, postal_code)`: the metropolitan commune an address is in,
  or None (another French commune, or no address);
- `postcode_belongs(insee_code, postal_code)`: whether a postcode serves that commune;
- `is_french_postcode(value)`: the shape of a French postcode (five digits, a department).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "data" / "communes-nantes-metropole.csv"

# Five digits whose first two name a department (01 to 95, 97 and 98 overseas; 20 covers
# Corsica's 20000-20999). 00xxx and 96xxx do not exist.
_FRENCH_POSTCODE = re.compile(r"^(?:0[1-9]|[1-8]\d|9[0-578])\d{3}$")


@dataclass(frozen=True)
class Commune:
    insee_code: str
    name: str
    postal_codes: tuple[str, ...]


def _folded(value: str) -> str:
    """A name compared without case, accents, hyphens or extra spaces ("saint herblain")."""
    text = unicodedata.normalize("NFKD", value or "")
    text = "".join(char for char in text if not unicodedata.combining(char))
    return " ".join(text.replace("-", " ").replace("'", " ").casefold().split())


@cache
def communes() -> tuple[Commune, ...]:
    """Every commune of the metropolis, sorted by name (read once)."""
    with DATA_FILE.open(encoding="utf-8", newline="") as handle:
        rows = [
            Commune(
                insee_code=row["insee_code"].strip(),
                name=row["name"].strip(),
                postal_codes=tuple(row["postal_codes"].split()),
            )
            for row in csv.DictReader(handle)
        ]
    return tuple(sorted(rows, key=lambda commune: _folded(commune.name)))


@cache
def _by_code() -> dict[str, Commune]:
    return {commune.insee_code: commune for commune in communes()}


def commune_by_code(insee_code: str) -> Commune | None:
    return _by_code().get((insee_code or "").strip())


def postcode_belongs(insee_code: str, postal_code: str) -> bool:
    commune = commune_by_code(insee_code)
    return commune is not None and (postal_code or "").strip() in commune.postal_codes


def commune_for_address(locality: str, postal_code: str) -> Commune | None:
    """The metropolitan commune named by an address (name and postcode must both match)."""
    name = _folded(locality)
    code = (postal_code or "").strip()
    for commune in communes():
        if _folded(commune.name) == name and code in commune.postal_codes:
            return commune
    return None


def is_french_postcode(value: str) -> bool:
    return bool(_FRENCH_POSTCODE.match((value or "").strip()))
