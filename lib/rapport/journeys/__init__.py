"""Journey analytics: what the interaction log says about the service as a whole.

`digest` is the lean form of an interaction the profile worker stores with it (one property
to read instead of a dozen), `report` turns a range of digests into the journey report (pure),
`html` renders a report as a self-contained HTML page with inline SVG charts.
"""
