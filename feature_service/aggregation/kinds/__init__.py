"""One aggregation per file, each a subclass of `aggregation.base.Aggregation`;
`aggregation.registry` lists them by name."""
