"""`--store {auto,device,stream}` and `--device-memory-gb` (common/data.py `open_feed`): BSuite keeps its
device store, Atari reads nothing before the memory check, the check picks the device store or the
stream and refuses a device store that cannot fit with one line, the stream's windows are windows of
the data and train like the device store's, and every script trains on the stream of a recorded
Atari fixture.

The scripts' Atari ResNets take minutes to compile on a CPU, so the in-process runs here swap them
for tiny networks with the same interface (the data path under test does not depend on them).
"""

import dataclasses
import importlib
import json
import signal
import threading

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scripts import one_line_error, optimizer_of, run_script
from test_replay import synthetic_episodes

from common.atari.fixture import write_fixture
from common.data import OfflineData, host_store, load_offline_data, open_feed
from common.errors import UsageError
from common.replay import gather_windows, pad_store, sample_windows

SCRIPTS = ["rosmo", "mzu", "mzu_q", "crr", "cql", "bc"]
GAME = "Pong"
RING = 256  # ring steps for the fixture: a refill of 64 holds its longest episode (41 steps)


# ----------------------------------------------------------------------------------------------
# Tiny stand-ins for the Atari networks (same constructor fields and methods, a few kilobytes)
# ----------------------------------------------------------------------------------------------


def pooled(frames: jax.Array) -> jax.Array:
    """[N, 84, 84, 4] uint8 -> [N, 6, 6, 4]: means of 14x14 blocks, in [0, 1]."""
    x = frames.astype(jnp.float32).reshape(frames.shape[0], 6, 14, 6, 14, frames.shape[-1])
    return x.mean(axis=(2, 4)) / 255.0


def tiny_state(frames: jax.Array) -> jax.Array:
    """[N, 84, 84, 4] uint8 -> [N, 6, 6, 8]: pooled frames through a 1x1 convolution."""
    return nn.Dense(8, name="torso")(pooled(frames))


class TinyMuZero(nn.Module):
    num_actions: int
    num_bins: int = 601
    dtype: object = jnp.float32
    downsample: str = "paper"
    size: str = "paper"

    def setup(self):
        self.torso, self.transition = nn.Dense(8), nn.Dense(8)  # 1x1 convolutions
        self.policy_head, self.value_head, self.reward_head = (
            nn.Dense(n) for n in (self.num_actions, self.num_bins, self.num_bins)
        )

    def represent(self, observation):
        frames = observation.reshape((-1,) + observation.shape[-3:])
        return self.torso(pooled(frames)).reshape(observation.shape[:-3] + (6, 6, 8))

    def dynamics(self, state, action):
        lead = jnp.broadcast_shapes(state.shape[:-3], jnp.shape(action))
        x = jnp.broadcast_to(state, lead + state.shape[-3:]).reshape((-1,) + state.shape[-3:])
        one_hot = jax.nn.one_hot(jnp.broadcast_to(action, lead).reshape(-1), self.num_actions)
        planes = jnp.broadcast_to(one_hot[:, None, None, :], x.shape[:-1] + (self.num_actions,))
        return (x + self.transition(jnp.concatenate([x, planes], axis=-1))).reshape(lead + state.shape[-3:])

    def predict(self, state):
        x = state.reshape(state.shape[:-3] + (-1,))
        return self.policy_head(x), self.value_head(x), self.reward_head(x)

    def __call__(self, observation, action):
        state = self.represent(observation)
        return self.predict(state), self.predict(self.dynamics(state, action))


class TinyPolicy(nn.Module):
    num_actions: int
    dtype: object = jnp.float32
    downsample: str = "paper"
    size: str = "paper"

    @nn.compact
    def __call__(self, observation):
        lead = observation.shape[:-3]
        x = tiny_state(observation.reshape((-1,) + observation.shape[-3:]))
        return nn.Dense(self.num_actions)(x.reshape(x.shape[0], -1)).reshape(lead + (self.num_actions,))


class TinyQ(nn.Module):
    num_actions: int
    num_bins: int = 601
    dtype: object = jnp.float32
    downsample: str = "paper"
    size: str = "paper"

    @nn.compact
    def __call__(self, observation):
        lead = observation.shape[:-3]
        x = tiny_state(observation.reshape((-1,) + observation.shape[-3:]))
        q = nn.Dense(self.num_actions * self.num_bins)(x.reshape(x.shape[0], -1))
        return q.reshape(lead + (self.num_actions, self.num_bins))


TINY = {"AtariMuZeroNetwork": TinyMuZero, "AtariPolicyNetwork": TinyPolicy, "AtariQNetwork": TinyQ}


def tiny_script(name: str, monkeypatch):
    """The script module with the Atari networks it builds (common.networks.Atari*, which every script reads
    through its `networks` module) swapped for the tiny ones, for this test only."""
    module = importlib.import_module(name)
    for attr, tiny in TINY.items():
        monkeypatch.setattr(module.networks, attr, tiny)
    args = module.apply_env_defaults(module.Args(env_id=GAME))
    built = module.make_networks(args, 6) if name == "crr" else (module.make_network(args, 6),)
    assert all(type(net) in TINY.values() for net in built), built  # the script builds the tiny stand-ins
    return module


def run_main(module, tmp_path, monkeypatch, **flags) -> dict:
    """module.main(Args(**flags)) in `tmp_path` (its run directory under runs/); its results.json."""
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        module.main(module.Args(**flags))
    finally:
        for s, handler in handlers.items():  # main installs its own; give pytest's back
            signal.signal(s, handler)
    (path,) = (tmp_path / "runs").glob(f"{GAME}__*/results.json")
    return json.loads(path.read_text())


def atari_flags(data_dir, **flags) -> dict:
    """One dispatch of 2 updates at batch 4, one evaluation episode of 2 steps."""
    return dict(
        env_id=GAME,
        data_dir=str(data_dir),
        batch_size=4,
        total_steps=2,
        eval_every=2,
        eval_episodes=1,
        eval_max_steps=2,
        updates_per_dispatch=2,
        stream_capacity_steps=RING,
        **flags,
    )


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    """2 shards x 2 Pong episodes of at most 40 agent steps, real ALE play, in the RL Unplugged format."""
    out = tmp_path_factory.mktemp("rlu")
    write_fixture(out, GAME, 1, num_shards=2, episodes_per_shard=2, max_steps=40, seed=0)
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The decoded-data cache of this test (the device path writes one)."""
    monkeypatch.setenv("ROSMO_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def stream_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("stream-")]


# ----------------------------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_store_flags_are_checked_before_anything_is_read(script):
    module = importlib.import_module(script)

    def check(**flags):
        module.check_args(module.apply_env_defaults(dataclasses.replace(module.Args(), **flags)))

    check(env_id=GAME, store="stream", device_memory_gb=24.0, stream_capacity_steps=4096)
    check(store="device")
    with pytest.raises(UsageError, match="--store stream streams Atari shards"):
        check(store="stream")  # BSuite
    with pytest.raises(UsageError, match="--device-memory-gb must be positive, got 0.0"):
        check(env_id=GAME, device_memory_gb=0.0)
    with pytest.raises(UsageError, match="--stream-capacity-steps must be at least 4, got 2"):
        check(env_id=GAME, stream_capacity_steps=2)


# ----------------------------------------------------------------------------------------------
# BSuite: the device store, exactly as it was read
# ----------------------------------------------------------------------------------------------


def test_bsuite_data_feed_the_same_device_store_at_every_dispatch_and_refuse_the_stream():
    store = host_store(synthetic_episodes([4, 6, 3]))
    data = OfflineData(store, 3, (3,), np.float32, {"path": "x"}, batch_size=8)
    feed = open_feed(data, {"w": jnp.ones(2)}, None, "auto")
    first = feed.next_store()
    assert feed.next_store() is first and feed.stream is None
    for a, b in zip(first, store):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert data.info == {"path": "x"}  # nothing added on BSuite
    assert isinstance(feed.place({"w": jnp.ones(2)})["w"], jax.Array)
    with pytest.raises(UsageError, match="BSuite data are always held whole"):
        open_feed(data, {"w": jnp.ones(2)}, None, "stream")


# ----------------------------------------------------------------------------------------------
# Atari: nothing read before the check; the check; the stream's windows are the data's
# ----------------------------------------------------------------------------------------------


def tiny_update(num_actions: int, batch_size: int = 4):
    """A jitted (state, store) -> (state, metrics) that samples windows as the scripts do."""

    def update(state, store):
        window = sample_windows(store, jax.random.key(0), batch_size, 3, num_actions)
        loss = jnp.mean(window.observation.astype(jnp.float32)) * state["w"]
        return {"w": state["w"] - 1e-3 * loss}, {"loss": loss}

    return jax.jit(update)


def test_atari_data_are_not_read_until_the_feed_and_a_missing_directory_fails_first(pong, cache, tmp_path):
    data = load_offline_data(GAME, 0.0, str(pong), 1.0, 4)
    assert data.store is None and data.obs_shape == (84, 84, 4) and data.obs_dtype == np.uint8
    assert data.info["path"].endswith(f"{GAME}/run_1") and data.info["data_fraction"] == 1.0
    assert not cache.exists()  # nothing decoded
    with pytest.raises(Exception, match="missing") as excinfo:
        load_offline_data(GAME, 0.0, str(tmp_path / "nowhere"), 1.0, 4)
    assert "\n" not in str(excinfo.value)


def window_keys(store, length: int = 3) -> set:
    """Every window of `length` steps starting at a transition of `store`, as bytes (frames, actions, rewards, ...)."""
    starts = np.asarray(store.starts)[: int(store.num_starts)]
    window = jax.jit(gather_windows, static_argnums=2)(
        store, jnp.asarray(starts), length, jnp.zeros((len(starts), length), int)
    )
    fields = [np.asarray(x) for x in window]
    return {b"".join(f[i].tobytes() for f in fields) for i in range(len(starts))}


def test_without_a_memory_limit_the_device_store_holds_the_whole_decoded_data(pong, cache, capsys):
    data = load_offline_data(GAME, 0.0, str(pong), 1.0, 4)
    feed = open_feed(data, {"w": jnp.ones(())}, None, "auto")  # this CPU reports no limit: no compile
    assert feed.stream is None and feed.next_store() is feed.next_store()
    assert data.info["store"] == "device" and data.info["episodes"] == 4 and data.info["transitions"] == 160
    assert "store: device store (the devices report no memory limit)" in capsys.readouterr().out
    # Now the decoded cache gives the exact size: 164 steps (1.2 MB) fit in 10 MB beside the tiny update.
    again = load_offline_data(GAME, 0.0, str(pong), 1.0, 4)
    assert again.atari.cached_steps == 164
    assert open_feed(again, {"w": jnp.ones(())}, tiny_update(again.num_actions), "auto", 0.01, RING).stream is None


def test_a_device_store_that_cannot_fit_is_one_line_naming_a_fraction_and_auto_streams_instead(pong, cache, capsys):
    data = load_offline_data(GAME, 0.0, str(pong), 1.0, 4)  # no cache: about 1M steps a shard, 14 GB for 2 shards
    with pytest.raises(UsageError) as excinfo:
        open_feed(data, {"w": jnp.ones(())}, tiny_update(data.num_actions), "device", 0.01, RING)
    message = str(excinfo.value)
    assert "\n" not in message and "--data-fraction 0.0007 or less" in message and "--store auto" in message
    assert not cache.exists()  # refused before decoding anything
    with open_feed(data, {"w": jnp.ones(())}, tiny_update(data.num_actions), "auto", 0.01, RING) as feed:
        assert feed.stream is not None and data.info["store"] == "stream" and data.info["capacity_steps"] == RING
        out = capsys.readouterr().out
        assert "store: stream store" in out and "XLA memory analysis" in out and f"into a ring of {RING} steps" in out
    assert not stream_threads()


def test_the_streams_windows_are_windows_of_the_data_and_cover_them_all(pong, cache):
    whole = open_feed(load_offline_data(GAME, 0.0, str(pong), 1.0, 4), {"w": jnp.ones(())}, None, "device")
    expected = window_keys(whole.next_store())
    seen = set()
    with open_feed(load_offline_data(GAME, 0.0, str(pong), 1.0, 4), {"w": jnp.ones(())}, None, "stream", None, RING) as feed:
        for _ in range(40):
            store = feed.next_store()
            assert store.observation.shape == (RING, 84, 84)
            keys = window_keys(store)
            assert keys <= expected  # no window of another episode, of dropped rows or of empty frames
            seen |= keys
            if seen == expected:
                break
    assert seen == expected and not stream_threads()


# ----------------------------------------------------------------------------------------------
# End to end: the scripts on the stream, the memory check as a user meets it, losses of both stores
# ----------------------------------------------------------------------------------------------


# bc meets the stream through --store auto: the budget (0.01 GB a device) holds the ring but not the data.
# The model-based scripts unroll 1 step with 1-step targets (and MZU searches 2 simulations): a smaller compile.
SHORT = {"unroll_steps": 1, "td_steps": 1}
STREAM_FLAGS = {
    "rosmo": {"store": "stream", **SHORT},
    "mzu": {"store": "stream", "num_simulations": 2, **SHORT},
    "mzu_q": {"store": "stream", "num_simulations": 2, **SHORT},
    "crr": {"store": "stream"},
    "cql": {"store": "stream"},
    "bc": {"device_memory_gb": 0.01},
}


@pytest.mark.e2e
@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_trains_on_the_stream_of_a_recorded_fixture(script, pong, cache, tmp_path, monkeypatch, capsys):
    results = run_main(tiny_script(script, monkeypatch), tmp_path, monkeypatch, **atari_flags(pong, **STREAM_FLAGS[script]))
    assert results["status"] == "finished" and results["total_steps"] == 2 and len(results["final_returns"]) == 1
    data = results["data"]
    assert data["store"] == "stream" and data["capacity_steps"] == RING and data["refill_steps"] == RING // 4
    assert data["data_fraction"] == 1.0 and data["shards"] == 2 and "episodes" not in data  # nothing counted
    assert not cache.exists() and not stream_threads()  # no decoded cache; the threads are stopped
    reason = "store: stream store: " if script == "bc" else "store: stream store (the devices report no memory limit)"
    assert reason in capsys.readouterr().out


@pytest.mark.e2e
def test_a_device_store_beyond_the_budget_is_one_line_with_exit_code_2_and_no_run_directory(pong, tmp_path):
    flags = ["--env-id", GAME, "--data-dir", str(pong), "--batch-size", "4", "--device-memory-gb", "0.01"]
    line = one_line_error(run_script([*flags, "--store", "device"], tmp_path, "bc.py"))
    # The fixture's 2 shards count as 2M steps before they are read: 0.01 GB / (2M x 7,081 bytes) = 0.0007.
    assert "--store device needs more than" in line and "--data-fraction 0.0007 or less" in line and "--store auto" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_the_stream_trains_like_the_device_store_and_empty_frames_would_not(pong, cache):
    """ROSMO (1-step unroll and targets, tiny network) from the same initial state and update keys, 30 updates on
    each store: the mean loss over the last half agrees within 25% (measured: 2%); the device store with every
    frame zeroed, what a broken stream could give, does not (measured: 3.8x). The device store is padded to the
    ring's shape (padding is never sampled), so one compile serves all three."""
    import rosmo

    flags = dict(env_id=GAME, batch_size=32, learning_rate=3e-3, warmup_steps=0, **SHORT)
    args = rosmo.apply_env_defaults(rosmo.Args(**flags))
    network = TinyMuZero(num_actions=6, num_bins=args.num_bins)
    optimizer = optimizer_of(rosmo, args)
    initial = rosmo.init_train_states(network, optimizer, jnp.zeros((1, 84, 84, 4), jnp.uint8), [0])
    train_chunk = rosmo.make_train_chunk(args, network, optimizer, 6, 5)

    def last_half_loss(store: str, blank: bool = False) -> float:
        feed = open_feed(load_offline_data(GAME, 0.0, str(pong), 1.0, 32), initial, train_chunk, store, None, RING)
        state, losses = feed.place(jax.tree.map(jnp.copy, initial)), []
        with feed:
            for _ in range(6):
                data = feed.next_store()
                if feed.stream is None:
                    data = feed.place(jax.tree.map(jnp.asarray, pad_store(data, RING, RING)))
                if blank:
                    data = data._replace(observation=jnp.zeros_like(data.observation))
                state, metrics = train_chunk(state, data)
                losses.append(float(np.mean(metrics["loss"])))
        return float(np.mean(losses[3:]))

    device, stream, blank = last_half_loss("device"), last_half_loss("stream"), last_half_loss("device", blank=True)
    assert abs(stream - device) < 0.25 * device, (device, stream)
    assert abs(blank - device) > 0.25 * device, (device, blank)
