"""Choosing how a student is shown its strategies: derive compact forms, measure modes, tune packs."""

__all__: list[str] = []
