"""The offline store: the Parquet log of every accepted event, per source."""
