"""The `export-embedder` click command: a thin layer over `distill.embedder_export.onnx.export_embedder`.

Wired into the main CLI as `edge-agent models export-embedder`; it only parses, calls and prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_agent.errors import EdgeAgentError
from edge_agent.runtime import debug_enabled

from .onnx import DEFAULT_QUANTIZATION, QUANTIZATIONS, export_embedder

__all__ = ["export_embedder_command"]


@click.command("export-embedder")
@click.option("--model", "model", default=None, metavar="NAME|DIR",
              help="Registry name or local sentence-transformers directory [default: the registry's "
                   "default embedder].")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: $EDGE_AGENT_HOME/embedders/<id>-<quantize>/].")
@click.option("--quantize", type=click.Choice(QUANTIZATIONS), default=DEFAULT_QUANTIZATION, show_default=True,
              help="int8-per-channel: fastest; int8-block32: closest to fp32, slower; none: fp32.")
@click.option("--force", is_flag=True, help="Re-export even if a matching export exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def export_embedder_command(model: str | None, out: Path | None, quantize: str, force: bool,
                            as_json: bool) -> None:
    """Export the embedder to ONNX and check it matches the torch model.

    \b
    Examples:
      edge-agent models export-embedder
      edge-agent models export-embedder --quantize int8-block32 --out ./embedder
      edge-agent models export-embedder --model ./my-st-model --force --json
    """
    try:
        report = export_embedder(model, out, quantize=quantize, force=force)
    except EdgeAgentError as err:
        if debug_enabled():
            raise
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
        return
    verb = "reused" if report.reused else f"exported in {report.seconds:.1f}s"
    click.echo(
        f"{report.id} ({report.quantization}, dim {report.dim}, {report.max_tokens} tokens) {verb} "
        f"to {report.out_dir}\n"
        f"model.onnx {report.onnx_bytes / 1e6:.1f} MB (fp32 {report.fp32_onnx_bytes / 1e6:.1f} MB); "
        f"cosine to torch on {report.n_texts} texts: min {report.min_cosine:.4f}, "
        f"mean {report.mean_cosine:.4f}; {report.ms_per_query:.1f} ms per 128-token query (1 thread)"
    )
