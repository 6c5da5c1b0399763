"""reports/: every table and figure of the paper regenerated from the runs, beside the published numbers.

``build`` loops over the studies and writes reports/ (all or nothing); ``renderers`` maps each
study's ``render`` (params.yaml) to what it draws; ``tables``, ``figures`` and ``page`` (index.html)
do the drawing; ``paper_values.yaml`` holds the published numbers.
"""
