"""Pure functions from Snapshots to the value types in memdiag.analysis.results.

Nothing here prints; memdiag.render turns results into text, tables or JSON.
"""
