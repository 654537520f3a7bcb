"""Martlet's local web UI: the commands of the installed plugins, as forms in a browser."""
