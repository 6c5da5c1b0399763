"""Data stages: where the datasets come from and how they become training samples.

``fetch`` (archives, verified and safely extracted) -> ``prepare`` (Parquet shards of the original
bytes + per-sample stats) -> ``validate`` (Great Expectations) -> ``split`` (seeded nested fractions).
``datasets/`` holds one spec per dataset (sources, reader of the official layout, decoders, classes,
depth range, evaluation crop); ``synth/`` writes the synthetic mini world in those official layouts.
"""
