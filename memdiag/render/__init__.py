"""Presentation: results become blocks (paragraphs and tables), which are
printed as rich tables on a terminal or aligned plain text when piped; or
results become JSON-ready dicts. Imports memdiag.model and analysis results,
never the CLI."""
