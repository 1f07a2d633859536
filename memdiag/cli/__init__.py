"""The command line: one module per command; main() is the error boundary."""
