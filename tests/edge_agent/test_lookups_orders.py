"""The order-lookup fact source over the retail example's JSON: who is identified, and what the record says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.lookups.orders import facts

REPO = Path(__file__).resolve().parents[2]
ORDERS = REPO / "distill" / "domains" / "retail_orders.orders.json"


def said(*lines: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": line} for line in lines]


def test_identified_by_email_or_by_name_and_zip() -> None:
    by_email = facts(said("it's maya.ortiz@example.com"), {}, ORDERS)
    assert by_email["customer_identified"] is True and by_email["order_processing"] is True
    assert by_email["order_id"] == "LH-20417"  # her open order, not the cancelled one
    by_name = facts(said("Ben Carter here, ZIP 55408"), {}, ORDERS)
    assert by_name["customer_identified"] is True and by_name["order_id"] == "LH-19990"
    assert by_name["return_received"] is True and by_name["return_checked"] is False
    assert by_name["return_received_date"] == "November 27"


def test_an_order_number_alone_identifies_nobody() -> None:
    assert facts(said("order LH-20417, where is it?"), {}, ORDERS) == {}
    assert facts(said("Maya Ortiz, order LH-20417"), {}, ORDERS) == {}  # name without the ZIP
    assert facts(said("my email is nobody@example.com"), {}, ORDERS) == {"details_not_matched": True}


def test_the_named_order_wins_among_the_customers_orders() -> None:
    picked = facts(said("maya.ortiz@example.com, about order LH-20050"), {}, ORDERS)
    assert picked["order_cancelled"] is True and picked["refund_issued"] is True


def test_record_states_as_of_the_files_date() -> None:
    stale = facts(said("grace.liu@example.com"), {}, ORDERS)
    assert stale["order_shipped"] is True and stale["tracking_stale"] is True and stale["last_scan_date"] == "November 22"
    delivered = facts(said("sam.okafor@example.com"), {}, ORDERS)
    assert delivered["within_return_window"] is True and delivered["within_damage_window"] is False
    assert delivered["return_received"] is False and delivered["refund_issued"] is False
    drop = facts(said("ruth.adeyemi@example.com"), {}, ORDERS)
    assert drop["price_dropped_within_14_days"] is False or drop["price_drop_amount"] == "$120"
    custom = facts(said("aiko.tanaka@example.net"), {}, ORDERS)
    assert custom["item_custom"] is True and custom["custom_cancel_window_open"] is True


def test_missing_file_gives_no_facts(tmp_path: Path) -> None:
    assert facts(said("maya.ortiz@example.com"), {}, tmp_path / "none.json") == {}
    assert facts(said("maya.ortiz@example.com"), {}, None) == {}


@pytest.mark.real
def test_the_retail_suite_passes_with_the_lookup(onnx_embedder_dir: Path, tmp_path: Path) -> None:
    """The third example domain end to end: built with its fact source, its whole suite through the command."""
    from edge_agent.pack.make import build_from_files

    pack = tmp_path / "retail"
    build_from_files(REPO / "distill/domains/retail_orders.library.jsonl", REPO / "distill/domains/retail_orders.toml",
                     pack, onnx_embedder_dir)
    manifest = json.loads((pack / "manifest.json").read_text(encoding="utf-8"))
    assert "facts/retail_orders.orders.json" in manifest["files"]
    entry = Path(sys.executable).parent / "edge-agent"
    done = subprocess.run([str(entry), "test", str(REPO / "tests/conversations/retail_orders.toml"), "--pack", str(pack),
                           "--json"], capture_output=True, text=True, timeout=600)
    data = json.loads(done.stdout)
    summary = data["summary"]
    assert summary["errors"] == 0 and summary["kinds"]["rules"]["failed"] == 0
    assert summary["kinds"]["facts"]["failed"] == 0, done.stdout[-2000:]
    assert summary["turn_pass_rate"] >= 0.9, [t for c in data["conversations"] for t in c["turns"] if not t["passed"]]
