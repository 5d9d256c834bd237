"""RL Unplugged Atari: the games and their shards' names (games), the shard reader (shards), the cache of decoded
subsets (cache), loading a run for the device store (loader), the streamed ring (stream, memory), the ALE
environments (env), HTTP reads (http_source), and the writers of data in the same format (fixture, behaviour).
See docs/architecture.md."""
