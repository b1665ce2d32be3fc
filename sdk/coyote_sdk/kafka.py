"""Kafka helpers shared by the runtime, the executor and tests."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner


async def account_partition(
    producer: AIOKafkaProducer, topic: str, account_id: str
) -> TopicPartition:
    """The partition of ``topic`` that records keyed by ``account_id`` go to.

    It is what the producer's default partitioner (murmur2 of the key) picks, over the topic's
    real partition count as the cluster reports it.

    Raises:
        RuntimeError: if the topic does not exist.
    """
    partitions = sorted(await producer.partitions_for(topic))
    if not partitions:
        raise RuntimeError(f"Kafka has no topic {topic}: is the stack up (coyote-sdk dev up)?")
    return TopicPartition(topic, DefaultPartitioner()(account_id.encode(), partitions, partitions))
