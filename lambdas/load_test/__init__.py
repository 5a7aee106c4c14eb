"""Load-test Lambda: `app.handler` drives an endpoint for one shard, `app.merge_handler` combines shards."""
