"""Presentation: results become blocks (paragraphs and tables), which are
printed as rich tables on a terminal or aligned plain text when piped; or
results become JSON-ready dicts. Reads the result types of
memdiag.analysis.results; never imports the CLI, and computes nothing: what
is shown (which suspects, how many) is decided in memdiag.analysis."""
