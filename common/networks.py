"""The latent dynamics model of ROSMO and MuZero Unplugged (paper Section 2.2, Appendix D.2.1).

`MuZeroNetwork` bundles the three functions of the paper:
  representation  s^0 = h_theta(o)
  dynamics        s^{k+1} = g_theta(s^k, a)        (the reward of that transition is read off s^{k+1})
  prediction      pi^k, v^k, r^k = f_theta(s^k)     (policy logits, value logits, reward logits)
The reward head sits in the prediction function and is applied to the state a transition leads
to, so g_theta(s, a) = (f_theta(s')_reward, s'). Value and reward heads output `num_bins`
categorical logits (see common/value_transforms.py). Output layers start at zero, so a fresh
network has a uniform policy and zero value and reward.

This module holds the BSuite MLPs of Table 4 (representation [64, 64, 32], dynamics
[32, 256, 32], prediction [32]). It does not hold losses, targets or data code.
"""

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Dense layers with ReLU between them; the last layer is linear unless `activate_final`."""

    features: Sequence[int]
    activate_final: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1 or self.activate_final:
                x = nn.relu(x)
        return x


class MuZeroNetwork(nn.Module):
    """Representation, dynamics and prediction MLPs for vector observations (BSuite)."""

    num_actions: int
    num_bins: int
    representation_layers: Sequence[int] = (64, 64, 32)
    dynamics_layers: Sequence[int] = (32, 256, 32)
    prediction_layers: Sequence[int] = (32,)

    def setup(self):
        self.representation_net = MLP(self.representation_layers)
        self.dynamics_net = MLP(self.dynamics_layers)
        self.prediction_trunk = MLP(self.prediction_layers, activate_final=True)
        zeros = nn.initializers.zeros
        self.policy_head = nn.Dense(self.num_actions, kernel_init=zeros, bias_init=zeros)
        self.value_head = nn.Dense(self.num_bins, kernel_init=zeros, bias_init=zeros)
        self.reward_head = nn.Dense(self.num_bins, kernel_init=zeros, bias_init=zeros)

    def represent(self, observation: jax.Array) -> jax.Array:
        """h_theta: observation [..., *obs_shape] (trailing dims flattened by the caller) -> state [..., S]."""
        return self.representation_net(observation)

    def dynamics(self, state: jax.Array, action: jax.Array) -> jax.Array:
        """g_theta's next state: state [..., S], integer action [...] -> next state [..., S]."""
        action_one_hot = jax.nn.one_hot(action, self.num_actions, dtype=state.dtype)
        return self.dynamics_net(jnp.concatenate([state, action_one_hot], axis=-1))

    def predict(self, state: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
        """f_theta: state [..., S] -> (policy logits [..., A], value logits [..., B], reward logits [..., B])."""
        x = self.prediction_trunk(state)
        return self.policy_head(x), self.value_head(x), self.reward_head(x)

    def __call__(self, observation: jax.Array, action: jax.Array):
        """Touches every function once; used only to initialise the parameters."""
        state = self.represent(observation)
        next_state = self.dynamics(state, action)
        return self.predict(state), self.predict(next_state)


def flatten_observation(observation: jax.Array, obs_ndim: int) -> jax.Array:
    """Flatten the trailing `obs_ndim` observation dims of a vector-observation batch."""
    lead = observation.shape[: observation.ndim - obs_ndim]
    return observation.reshape(lead + (-1,))


def weight_decay_mask(params):
    """True for kernels (weights), False for biases and norm scales: AdamW decays weights only."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel", params)
