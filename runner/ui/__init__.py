"""`run-project ui`: a read-only web page over the run store (docs/ui.md).

Standard library only (http.server, html escaping, SVG drawn on the server), so the UI needs
no extra install, loads nothing on a plain run (the cli imports it only for `ui`), and every
byte it serves comes from this package: no network assets, no JavaScript library.
"""
