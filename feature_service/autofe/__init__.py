"""Automatic feature engineering: propose feature definitions from a sample of events.

`sampling` reads the sample (a file or a topic), `types` decides what each column is
(its kind, its role, whether it links entities), `dfs` asks featuretools' Deep Feature
Synthesis for candidates and maps them onto our aggregations and windows, adding what
the aggregations propose of themselves (`Aggregation.proposals`), `pruning` drops what
the sample shows to be useless (measured by `ranking.point_in_time_values`, our own
engine), `ranking` keeps the candidates that best predict a label (`--label`,
`--labels`), and `render` writes a commented definitions file. `feature-service
generate` strings them together (`feature_service/cli/generate.py`).
"""
