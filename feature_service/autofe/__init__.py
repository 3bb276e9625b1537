"""Automatic feature engineering: propose feature definitions from a sample of events.

`sampling` reads the sample (a file or a topic), `types` decides what each column is,
`dfs` asks featuretools' Deep Feature Synthesis for candidates and maps them onto our
aggregations and windows, `pruning` drops what the sample shows to be useless,
`ranking` keeps the candidates that best predict a label (`--label`, `--labels`), and
`render` writes a commented definitions file. `feature-service generate` strings them
together (`feature_service/cli/generate.py`).
"""
