"""The online store: tile state per (view, entity) in Redis, read at request time."""
