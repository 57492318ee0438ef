"""The policy digest: the short policy the student sees, kept beside the full one the builder uses.

A domain's `[policy] text` is what the teacher, judge and lint work from; `[policy] digest` (written
by hand) or `[policy] digest_file` (a one-entry library file that `edge-agent distill digest` drafts
and `edge-agent library review` approves, edits or rejects) is what goes into the device's system
prompt. This module reads and writes that file and says whether it is usable; it calls no model.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, PackError
from .library import Strategy, read_library, write_library

if TYPE_CHECKING:
    from .domain import Domain

__all__ = ["DIGEST_ID", "attach_digest", "digest_record", "policy_hash", "read_digest", "write_digest"]

DIGEST_ID = "policy-digest"


def policy_hash(text: str) -> str:
    """A short hash of the policy text, whitespace-insensitive (re-wrapping a line is no change)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]


def digest_record(policy: str, digest: str, provenance: Mapping[str, Any]) -> Strategy:
    """A draft digest as a library entry: the full policy as its scenario, the digest as its text."""
    return Strategy(id=DIGEST_ID, scenario=policy.strip(), strategy=digest.strip(), source="distilled",
                    status="pending", tags=(DIGEST_ID,),
                    provenance={**dict(provenance), "kind": DIGEST_ID, "policy_sha256": policy_hash(policy),
                                "chars": len(digest.strip())})


def write_digest(path: Path, record: Strategy) -> None:
    write_library(Path(path), [record])


def read_digest(path: Path, policy: str, where: str) -> tuple[str, dict[str, Any]]:
    """The digest text in a digest file and what to record about it (status, reviewer, staleness)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{where}: digest_file {path.name} not found next to the domain file; draft one with: "
                          "edge-agent distill digest --domain DOMAIN.toml --out " + path.name)
    try:
        entries = read_library(path)
    except PackError as exc:
        raise ConfigError(f"{where}: digest_file {path.name}: {exc}") from None
    if len(entries) != 1:
        raise ConfigError(f"{where}: digest_file {path.name} holds {len(entries)} entries; it must hold exactly one")
    entry = entries[0]
    if entry.status == "rejected":
        raise ConfigError(f"{where}: the digest in {path.name} was rejected in review; draft a new one with "
                          "edge-agent distill digest, or remove digest_file to show the student the full policy")
    last = entry.reviews[-1] if entry.reviews else None
    drafted_from = entry.provenance.get("policy_sha256")
    info = {"file": path.name, "status": entry.status, "source": entry.source, "chars": len(entry.strategy),
            "reviewed_by": last.reviewer if last else "", "reviewed_at": last.at if last else "",
            "stale": bool(drafted_from) and drafted_from != policy_hash(policy)}
    return entry.strategy.strip(), info


def attach_digest(domain: Domain) -> Domain:
    """The domain with its `digest_file` read (a no-op for an inline digest or none)."""
    name = domain.digest_info.get("file")
    if not name or domain.digest:
        return domain
    if Path(str(name)).name != str(name):
        raise ConfigError(f"{domain.source} [policy]: digest_file must be a file name next to the domain file, "
                          f"not a path ({name})")
    base = domain.base_dir or Path.cwd()
    text, info = read_digest(base / str(name), domain.policy, f"{domain.source} [policy]")
    return dataclasses.replace(domain, digest=text, digest_info=info)
