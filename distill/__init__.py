"""distill: the offline builder. Teacher, simulator, judge, the build loop, evaluation, export.

Runs once, with network, on a workstation; may import `edge_agent`, never the reverse.
"""

__all__: list[str] = []
