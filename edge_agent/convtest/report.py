"""What `edge-agent test` prints and writes: one line per failed check, a summary table, JUnit XML.

Pure formatting over `SuiteResult`; the CLI decides where it goes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from .runner import ConversationResult, SuiteResult

__all__ = ["failure_lines", "summary_table", "write_junit", "cut"]

_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def cut(text: str, n: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 3] + "..."


def failure_lines(conv: ConversationResult, width: int = 100) -> list[str]:
    """`FAIL <conversation> turn <n> <kind>: <detail> | reply: <reply cut>`, one per failed check."""
    lines = []
    for turn in conv.turns:
        for check in turn.failures():
            route = f" [{turn.route}]" if turn.route else ""
            lines.append(
                f"FAIL {conv.id} turn {turn.index} {check.kind}: {check.detail}{route} | "
                f"reply: {cut(turn.reply, width)!r}"
            )
    if conv.error:
        lines.append(f"ERROR {conv.id} {conv.error}")
    return lines


def summary_table(result: SuiteResult) -> str:
    s = result.summary()
    rows = [
        (
            "conversations",
            f"{s['conversations_passed']}/{s['conversations']} passed"
            + (f", {s['errors']} errored" if s["errors"] else ""),
        ),
        ("turns", f"{s['turns_passed']}/{s['turns']} passed every check ({100 * s['turn_pass_rate']:.1f}%)"),
        ("checks", f"{s['checks_passed']} passed, {s['checks_failed']} failed"),
    ]
    for kind, row in s["kinds"].items():
        rows.append((f"  {kind}", f"{row['passed']} passed, {row['failed']} failed"))
    for route, row in s["routes"].items():
        rows.append((f"  route {route}", f"{row['turns']} turns, {row['passed']} passed"))
    rows.append(("time", f"{s['seconds']:.1f} s, {s['turn_ms_p50']:.0f} ms per turn (p50)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _clean(text: str) -> str:
    return _XML_BAD.sub("?", text)


def write_junit(result: SuiteResult, path: Path) -> None:
    """One <testcase> per customer line (classname = suite.conversation), failures listing each check."""
    s = result.summary()
    root = ET.Element(
        "testsuites",
        name="edge-agent test",
        tests=str(s["turns"]),
        failures=str(s["turns"] - s["turns_passed"]),
        time=f"{result.seconds:.3f}",
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=_clean(result.name),
        tests=str(s["turns"]),
        failures=str(s["turns"] - s["turns_passed"]),
        errors=str(s["errors"]),
        time=f"{result.seconds:.3f}",
    )
    for conv in result.conversations:
        for turn in conv.turns:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_clean(f"{result.name}.{conv.id}"),
                name=_clean(f"turn {turn.index}: {cut(turn.customer, 60)}"),
                time=f"{turn.ms / 1e3:.3f}",
            )
            failed = turn.failures()
            if failed:
                fail = ET.SubElement(
                    case,
                    "failure",
                    type=failed[0].kind,
                    message=_clean("; ".join(f"{c.kind}: {c.detail}" for c in failed)),
                )
                fail.text = _clean(
                    f"customer: {turn.customer}\nreply: {turn.reply}\nroute: {turn.route} {turn.reason}"
                )
            out = ET.SubElement(case, "system-out")
            out.text = _clean(turn.reply)
        if conv.error:
            case = ET.SubElement(
                suite, "testcase", classname=_clean(f"{result.name}.{conv.id}"), name="agent error"
            )
            ET.SubElement(case, "error", message=_clean(conv.error))
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tree.write(tmp, encoding="utf-8", xml_declaration=True)
    tmp.replace(path)
