"""Training of one run: the paper's alternating depth / auxiliary scheme on a frozen backbone.

``loop`` reads top to bottom like a training script; ``scheme`` is paper Eq. 4-5 (two optimizers,
the alternating step); ``stream`` the data order; ``evaluate`` the toolbox protocol; ``checkpoint``
exact resume; ``runtime`` devices and DDP; ``config`` the typed run configuration it takes; ``tasks``
the registry of auxiliary tasks; ``losses``, ``schedule``, ``metrics``, ``transforms`` the parts.
"""
