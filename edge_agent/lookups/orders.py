"""An order-status fact source over a local JSON file of orders (the retail example desk's).

The customer is identified by the order's email address, or by the full name on the order with the
delivery ZIP code, as they wrote them; an order number only picks which of their orders is meant.
It returns what the record says (status, carrier, dates, return and refund state) as facts, and
nothing for a customer it cannot identify. It only reads: the agent takes no action on an order.
File shape: {"as_of": "YYYY-MM-DD", "orders": [{order_id, email, name, zip, status, placed, ...}]}.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from ..files import read_json_object

__all__ = ["facts", "order_facts"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_ORDER_ID = re.compile(r"\b[A-Z]{2,4}-\d{4,6}\b", re.IGNORECASE)
_ZIP = re.compile(r"(?<![\w-])\d{5}(?![\w-])")  # not the digits of an order number like LH-20417
_SHIPPED = {"shipped", "out_for_delivery"}


def _day(iso: str | None) -> str:
    """"2026-12-03" -> "December 3" (how a reply says it)."""
    if not iso:
        return ""
    d = date.fromisoformat(iso)
    return f"{d.strftime('%B')} {d.day}"


def _days_between(a: str | None, b: str | None) -> int | None:
    if not a or not b:
        return None
    return (date.fromisoformat(b) - date.fromisoformat(a)).days


def order_facts(order: Mapping[str, Any], as_of: str) -> dict[str, Any]:
    """The facts one order record establishes, as of the file's date."""
    items = list(order.get("items") or [])
    first = items[0] if items else {}
    status = str(order.get("status", ""))
    tracking = order.get("tracking") or {}
    ret = order.get("return") or {}
    out: dict[str, Any] = {
        "customer_identified": True,
        "customer_first_name": str(order.get("name", "")).split(" ")[0],
        "order_id": str(order.get("order_id", "")),
        "order_status": status.replace("_", " "),
        "item_name": str(first.get("name", "")).split(" (")[0].lower(),
        "order_processing": status == "processing",
        "order_shipped": status in _SHIPPED,
        "order_out_for_delivery": status == "out_for_delivery",
        "order_delivered": status in ("delivered", "returned"),
        "order_cancelled": status == "cancelled",
        "item_final_sale": any(bool(i.get("final_sale")) for i in items),
        "item_custom": any(bool(i.get("custom")) for i in items),
        "item_bedding": any(i.get("category") == "bedding" for i in items),
        "item_large": any(bool(i.get("large")) for i in items),
        "wrong_item_sent": bool(order.get("shipped_items")),
    }
    if order.get("carrier"):
        out["carrier"] = str(order["carrier"])
    for key, name in (("estimated_delivery", "estimated_delivery"), ("shipped", "shipped_date"),
                      ("delivered", "delivered_date"), ("placed", "placed_date")):
        if order.get(key):
            out[name] = _day(str(order[key]))
    if tracking:
        out["tracking_event"] = str(tracking.get("last_event", "")).lower()
        stale = _days_between(tracking.get("last_scan"), as_of)
        out["tracking_stale"] = status in _SHIPPED and stale is not None and stale >= 7
        if tracking.get("last_scan"):
            out["last_scan_date"] = _day(str(tracking["last_scan"]))
    since_delivery = _days_between(order.get("delivered"), as_of)
    if since_delivery is not None:
        out["within_return_window"] = since_delivery <= 30
        out["within_damage_window"] = since_delivery <= 7
    since_placed = _days_between(order.get("placed"), as_of)
    if since_placed is not None and out["item_custom"]:
        out["custom_cancel_window_open"] = since_placed <= 2
    # no return or refund on the record means none was received or issued: those are facts too
    out["return_received"] = bool(ret.get("received"))
    out["return_checked"] = bool(ret.get("checked"))
    if ret.get("received"):
        out["return_received_date"] = _day(str(ret["received"]))
    out["refund_issued"] = bool((order.get("refund") or {}).get("issued"))
    drops = [float(i["price"]) - float(i["price_now"]) for i in items
             if i.get("price_now") is not None and float(i["price_now"]) < float(i["price"])]
    if drops and since_placed is not None:
        out["price_dropped_within_14_days"] = since_placed <= 14
        out["price_drop_amount"] = f"${max(drops):.0f}"
    return out


def facts(messages: Sequence[Mapping[str, str]], known: Mapping[str, Any], data: Path | None) -> dict[str, Any]:
    """Facts about the customer's order, looked up from what they wrote (see the module docstring)."""
    if data is None or not Path(data).is_file():
        return {}
    db = read_json_object(Path(data))
    said = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
    low = " ".join(said.lower().split())
    emails = {e.lower().rstrip(".") for e in _EMAIL.findall(said)}
    zips = set(_ZIP.findall(said))
    ids = {i.upper() for i in _ORDER_ID.findall(said)}
    orders = [o for o in db.get("orders", []) if isinstance(o, dict)]
    theirs = [o for o in orders if str(o.get("email", "")).lower() in emails
              or (str(o.get("name", "")).lower() in low and str(o.get("zip", "")) in zips)]
    if not theirs:
        return {"details_not_matched": True} if emails or zips else {}
    named = [o for o in theirs if str(o.get("order_id", "")).upper() in ids]
    # the order they name, else their most recent one that is still open
    pick = named or sorted(theirs, key=lambda o: (o.get("status") != "cancelled", str(o.get("placed", ""))))[-1:]
    return order_facts(pick[0], str(db.get("as_of") or date.today().isoformat()))
