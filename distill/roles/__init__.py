"""Calls to the remote roles (teacher, writer, merger, judge, customer): the OpenAI-compatible client,
the call cache, the budget meter and structured-output parsing.
"""
