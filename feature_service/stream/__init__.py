"""Stream processing: topics, and (later) the Faust worker that computes features."""
