"""The demo desk's fact source: accounts and the network status page, from a small JSON file.

A real deployment points `[fact_source]` at its own CRM and status page; this one reads
`accounts.json` (shipped inside the demo pack). It only reads: the agent takes no actions.
An account is identified when its holder's full name and its postcode (or the last 4 digits of
the account number) appear in the customer's messages; outage facts need only a postcode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import read_json_object

__all__ = ["facts", "find_postcodes"]

_POSTCODE = re.compile(r"\b([A-Z]{1,2}\d[A-Z\d]?)\s*(\d[A-Z]{2})\b", re.IGNORECASE)
_LAST4 = re.compile(
    r"\b(?:ends?|ending)\s+(?:in|with)\s+(\d{4})\b|\blast\s+(?:4|four)\s+(?:digits\s+)?(?:are\s+|is\s+)?(\d{4})\b",
    re.IGNORECASE,
)


def find_postcodes(text: str) -> list[str]:
    return [f"{a.upper()} {b.upper()}" for a, b in _POSTCODE.findall(text)]


def facts(
    messages: Sequence[Mapping[str, str]], known: Mapping[str, Any], data: Path | None
) -> dict[str, Any]:
    """Facts about the account and its area that the customer's own words let us look up."""
    if data is None or not Path(data).is_file():
        return {}
    db = read_json_object(Path(data))
    said = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    low = " ".join(said.lower().split())
    postcodes = find_postcodes(said)
    last4 = {a or b for a, b in _LAST4.findall(said)}
    out: dict[str, Any] = {}
    account = None
    for acc in db.get("accounts", []):
        named = str(acc.get("name", "")).lower() in low
        if named and (acc.get("postcode") in postcodes or acc.get("account_last4") in last4):
            account = acc
            break
    if account is not None:
        out["identity_verified"] = True
        out["account_holder"] = account["name"]
        out["within_minimum_term"] = int(account.get("months_in_term", 0)) < int(
            account.get("term_months", 12)
        )
        out["duplicate_payment_confirmed"] = int(account.get("payments_this_month", 1)) > 1
    area_code = (account["postcode"] if account else (postcodes[0] if postcodes else "")).split(" ")[0]
    if area_code:
        outage = next(
            (o for o in db.get("outages", []) if o.get("area") == area_code and o.get("confirmed")), None
        )
        out["outage_confirmed"] = outage is not None
        if outage is not None:
            out["outage_over_24h"] = float(outage.get("hours", 0)) > 24
            out["outage_ongoing"] = bool(outage.get("ongoing"))
            out["fault_on_our_side"] = True
    return out
