"""The study report: one self-contained HTML page per sweep (``report.html``; ``medbench report DIR``).

``build`` assembles the page from a collated sweep, ``figures`` draws the Pareto plot and the latency
distributions (inline PNGs), ``html`` holds the escaping / table helpers, ``labels`` places point labels without
overlaps (also used by ``medbench collate --plot``).
"""
