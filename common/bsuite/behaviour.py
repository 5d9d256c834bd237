"""The behaviour agent of the BSuite datasets (paper Appendix E): an online DQN that learns while every episode it
plays is recorded.

The agent is the bsuite baseline DQN in JAX (`DQNConfig`): an MLP [64, 64] on the flattened observation, Adam with
learning rate 1e-3, discount 0.99, a uniform replay of 10,000 transitions, batches of 32, learning from 100 stored
transitions on, one SGD step per environment step, the target network copied every 4 SGD steps and epsilon-greedy
exploration with epsilon 0.05; the one tuned setting is cartpole's learning rate, 1e-4, without which its agent
collapses under action noise (`DQN_CONFIGS`); the mean returns then land near the paper's Table 5. With probability
`noise` its action is replaced by a uniformly random one, in the environment (the paper's: stochastic transitions,
the agent's action recorded) or inside the agent (`noise_in` "behaviour"). Everything follows from one seed.
common/bsuite/datasets.py stores what it records; this module writes nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from tqdm import tqdm

from common.bsuite.env import BSUITE_ENVS, NOISE_IN, check_env_id, check_noise_in, make_env  # noqa: F401 - part of this module's interface

# ----------------------------------------------------------------------------------------------
# The DQN behaviour agent
# ----------------------------------------------------------------------------------------------


class DQNConfig(NamedTuple):
    """Hyperparameters of the behaviour agent (the bsuite baseline DQN)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    learning_rate: float = 1e-3
    discount: float = 0.99
    replay_capacity: int = 10_000
    batch_size: int = 32
    min_replay_size: int = 100
    sgd_period: int = 1
    target_update_period: int = 4
    epsilon: float = 0.05


# The bsuite baseline settings everywhere except cartpole's learning rate: at 1e-3 the cartpole agent
# keeps collapsing under action noise (mean return 382 at noise 0.3 against the paper's 787); at 1e-4
# it is stable and its returns match Table 5 (571 / 781 at noise 0 / 0.3 against 630 / 787).
# At 1e-4 catch and mountain_car learn too slowly (mountain_car -413 against -165), so they keep 1e-3.
DQN_CONFIGS = {
    "catch": DQNConfig(),
    "cartpole": DQNConfig(learning_rate=1e-4),
    "mountain_car": DQNConfig(),
}


class Transitions(NamedTuple):
    observation: Any  # [C, *obs_shape] float32
    action: Any  # [C] int32
    reward: Any  # [C] float32
    discount: Any  # [C] float32, the environment's discount (0 on termination)
    next_observation: Any  # [C, *obs_shape] float32


class AgentState(NamedTuple):
    params: Any  # [P] float32, the online network's parameters as one flat vector
    target_params: Any  # [P] float32
    opt_state: Any
    replay: Transitions  # fixed-size ring buffer
    replay_count: Any  # int32, transitions inserted so far
    num_steps: Any  # int32, environment steps seen
    num_updates: Any  # int32, SGD steps done
    key: Any


class Agent(NamedTuple):
    """Jitted pure functions of the behaviour agent; the state is donated and updated in place.

    init(key) -> state
    act(state, observation) -> (state, executed_action)
    step(state, observation, action, reward, discount, next_observation) -> (state, next_executed_action)
        stores the transition, does the SGD step (and target copy) when due and picks the action
        to execute at next_observation, all in one call.
    """

    init: Callable
    act: Callable
    step: Callable


def make_agent(obs_shape: Sequence[int], num_actions: int, noise: float, config: DQNConfig = DQNConfig()) -> Agent:
    """The DQN agent; with probability `noise` the action it returns is replaced by a uniform one."""

    class QNetwork(nn.Module):
        hidden_sizes: tuple[int, ...]
        num_actions: int

        @nn.compact
        def __call__(self, observation):
            x = observation.reshape((observation.shape[0], -1))
            for size in self.hidden_sizes:
                x = nn.relu(nn.Dense(size)(x))
            return nn.Dense(self.num_actions)(x)

    network = QNetwork(tuple(config.hidden_sizes), num_actions)
    optimizer = optax.adam(config.learning_rate)
    capacity = config.replay_capacity
    obs_shape = tuple(obs_shape)
    dummy = jnp.zeros((1, *obs_shape), jnp.float32)
    # Flat parameter vectors keep the state small: fewer arrays, cheaper dispatch per step.
    _, unravel = ravel_pytree(network.init(jax.random.key(0), dummy))

    def q_values(flat_params, observation):
        return network.apply(unravel(flat_params), observation)

    def init(key):
        key, init_key = jax.random.split(key)
        params, _ = ravel_pytree(network.init(init_key, dummy))
        replay = Transitions(
            observation=jnp.zeros((capacity, *obs_shape), jnp.float32),
            action=jnp.zeros((capacity,), jnp.int32),
            reward=jnp.zeros((capacity,), jnp.float32),
            discount=jnp.zeros((capacity,), jnp.float32),
            next_observation=jnp.zeros((capacity, *obs_shape), jnp.float32),
        )
        zero = jnp.zeros((), jnp.int32)
        return AgentState(params, params, optimizer.init(params), replay, zero, zero, zero, key)

    def select(params, key, observation):
        explore_key, explore_action_key, noise_key, noise_action_key = jax.random.split(key, 4)
        q = q_values(params, observation[None])[0]
        action = jnp.argmax(q).astype(jnp.int32)
        explore = jax.random.uniform(explore_key) < config.epsilon
        action = jnp.where(explore, jax.random.randint(explore_action_key, (), 0, num_actions), action)
        replace = jax.random.uniform(noise_key) < noise
        return jnp.where(replace, jax.random.randint(noise_action_key, (), 0, num_actions), action)

    def loss_fn(params, target_params, batch: Transitions):
        q = q_values(params, batch.observation)
        q_taken = jnp.take_along_axis(q, batch.action[:, None], axis=1)[:, 0]
        q_next = q_values(target_params, batch.next_observation)
        target = batch.reward + config.discount * batch.discount * jnp.max(q_next, axis=1)
        return jnp.mean(jnp.square(jax.lax.stop_gradient(target) - q_taken))

    def sgd(state: AgentState, key) -> AgentState:
        size = jnp.minimum(state.replay_count, capacity)
        indices = jax.random.randint(key, (config.batch_size,), 0, size)
        batch = jax.tree.map(lambda x: x[indices], state.replay)
        grads = jax.grad(loss_fn)(state.params, state.target_params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        num_updates = state.num_updates + 1
        copy = num_updates % config.target_update_period == 0
        target_params = jnp.where(copy, params, state.target_params)
        return state._replace(params=params, target_params=target_params, opt_state=opt_state, num_updates=num_updates)

    def act(state: AgentState, observation):
        key, act_key = jax.random.split(state.key)
        return state._replace(key=key), select(state.params, act_key, observation)

    def step(state: AgentState, observation, action, reward, discount, next_observation):
        index = state.replay_count % capacity
        new = Transitions(observation, action, reward, discount, next_observation)
        replay = jax.tree.map(lambda buffer, x: buffer.at[index].set(x), state.replay, new)
        key, sgd_key, act_key = jax.random.split(state.key, 3)
        state = state._replace(replay=replay, replay_count=state.replay_count + 1, num_steps=state.num_steps + 1, key=key)
        due = (jnp.minimum(state.replay_count, capacity) >= config.min_replay_size) & (
            state.num_steps % config.sgd_period == 0
        )
        state = jax.lax.cond(due, lambda s: sgd(s, sgd_key), lambda s: s, state)
        return state, select(state.params, act_key, next_observation)

    return Agent(init=jax.jit(init), act=jax.jit(act, donate_argnums=0), step=jax.jit(step, donate_argnums=0))


# ----------------------------------------------------------------------------------------------
# Running the agent and recording every episode
# ----------------------------------------------------------------------------------------------


def derive_seeds(seed: int) -> tuple[int, int, int]:
    """(environment seed, agent seed, environment noise seed), all derived from the one dataset seed."""
    env_seed, agent_seed, noise_seed = np.random.SeedSequence(seed).generate_state(3)
    return int(env_seed), int(agent_seed), int(noise_seed)


def episode_to_rlds(observations: list, actions: list, rewards: list, discounts: list) -> dict[str, np.ndarray]:
    """RLDS steps of one episode of T transitions: T + 1 steps, the last one padded."""
    num_transitions = len(actions)
    is_last = np.zeros(num_transitions + 1, bool)
    is_last[-1] = True
    is_first = np.zeros(num_transitions + 1, bool)
    is_first[0] = True
    return {
        "observation": np.stack(observations).astype(np.float32),
        "action": np.asarray([*actions, 0], np.int64),
        "reward": np.asarray([*rewards, 0.0], np.float32),
        "discount": np.asarray([*discounts, 0.0], np.float32),
        "is_first": is_first,
        "is_last": is_last,
        "is_terminal": is_last & (discounts[-1] == 0.0),
    }


def run_behaviour_agent(
    env_id: str,
    noise: float,
    seed: int,
    num_episodes: int,
    config: DQNConfig | None = None,
    progress: bool = True,
    noise_in: str = "environment",
) -> Iterator[dict[str, np.ndarray]]:
    """Train the DQN agent online for `num_episodes` episodes, yielding each episode's RLDS steps.

    `config` defaults to DQN_CONFIGS[env_id]. `noise_in` "environment": the environment replaces the
    action (the agent's action is recorded); "behaviour": the agent does (the executed one is recorded).
    """
    check_env_id(env_id)
    check_noise_in(noise_in)
    config = DQN_CONFIGS[env_id] if config is None else config
    env_seed, agent_seed, noise_seed = derive_seeds(seed)
    in_env = noise_in == "environment"
    env = make_env(env_id, env_seed, noise if in_env else 0.0, noise_seed)
    obs_shape = env.observation_spec().shape
    agent = make_agent(obs_shape, env.action_spec().num_values, 0.0 if in_env else noise, config)
    state = agent.init(jax.random.key(agent_seed))
    total_return = 0.0
    desc = f"{env_id} noise={float(noise)!r} in {noise_in}"
    with tqdm(total=num_episodes, desc=desc, unit="ep", disable=not progress) as bar:
        for episode in range(num_episodes):
            timestep = env.reset()
            observation = np.array(timestep.observation, np.float32)
            observations, actions, rewards, discounts = [observation], [], [], []
            state, action = agent.act(state, observation)
            action = int(action)
            while True:
                timestep = env.step(action)
                next_observation = np.array(timestep.observation, np.float32)
                reward, discount = np.float32(timestep.reward), np.float32(timestep.discount)
                observations.append(next_observation)
                actions.append(action)
                rewards.append(reward)
                discounts.append(discount)
                state, next_action = agent.step(state, observation, np.int32(action), reward, discount, next_observation)
                if timestep.last():
                    break
                observation, action = next_observation, int(next_action)
            steps = episode_to_rlds(observations, actions, rewards, discounts)
            total_return += float(np.sum(steps["reward"], dtype=np.float64))
            bar.update(1)
            bar.set_postfix(mean_return=f"{total_return / (episode + 1):.2f}", refresh=False)
            yield steps
