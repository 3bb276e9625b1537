"""The embedded Kafka's cluster id is one `kafka-storage format -t` accepts."""

from __future__ import annotations

import base64

from feature_service.embedded.kafka import random_cluster_id


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    # One URL-safe base64 id in 64 started with "-": kafka-storage (argparse4j) read it
    # as an option and `up` with Kafka failed ("argument --cluster-id/-t: expected one
    # argument"). 5,000 draws miss such an id with probability (63/64)**5000 ~ 1e-34.
    ids = [random_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
    for i in ids[:100]:  # still Kafka's form: 16 bytes, URL-safe base64, no padding
        assert len(i) == 22 and len(base64.urlsafe_b64decode(i + "==")) == 16
