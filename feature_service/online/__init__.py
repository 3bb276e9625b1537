"""The online store: the state of each (view, entity) in Redis, read at request time."""
