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
[32, 256, 32], prediction [32]) and the baselines' networks built from the same blocks (paper
Fig. 5 right): `PolicyNetwork` (representation + prediction, for BC and CRR's actor) and
`QNetwork` (representation + a dynamics-like trunk on the state and the one-hot action, without
a next state, + a prediction-like head with categorical Q logits, for CRR's critic and CQL).
It does not hold losses, targets or data code.
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


class PolicyNetwork(nn.Module):
    """pi(a|s) from representation + prediction (paper Fig. 5 right-b); zero-initialised logits."""

    num_actions: int
    representation_layers: Sequence[int] = (64, 64, 32)
    prediction_layers: Sequence[int] = (32,)

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        """observation [..., D] -> policy logits [..., A]."""
        state = MLP(self.representation_layers)(observation)
        x = MLP(self.prediction_layers, activate_final=True)(state)
        zeros = nn.initializers.zeros
        return nn.Dense(self.num_actions, kernel_init=zeros, bias_init=zeros)(x)


class QNetwork(nn.Module):
    """Categorical Q(s, a) for every action (paper Fig. 5 right-c/d), as `num_bins` logits.

    The state s = representation(o) is concatenated with each one-hot action and passed through
    a dynamics-like MLP and a prediction-like trunk; the output layer starts at zero (Q = 0).
    """

    num_actions: int
    num_bins: int
    representation_layers: Sequence[int] = (64, 64, 32)
    dynamics_layers: Sequence[int] = (32, 256, 32)
    prediction_layers: Sequence[int] = (32,)

    @nn.compact
    def __call__(self, observation: jax.Array) -> jax.Array:
        """observation [..., D] -> Q logits [..., A, num_bins]."""
        state = MLP(self.representation_layers)(observation)
        states = jnp.broadcast_to(state[..., None, :], state.shape[:-1] + (self.num_actions, state.shape[-1]))
        actions = jnp.broadcast_to(jnp.eye(self.num_actions, dtype=state.dtype), states.shape[:-1] + (self.num_actions,))
        x = MLP(self.dynamics_layers, activate_final=True)(jnp.concatenate([states, actions], axis=-1))
        x = MLP(self.prediction_layers, activate_final=True)(x)
        zeros = nn.initializers.zeros
        return nn.Dense(self.num_bins, kernel_init=zeros, bias_init=zeros)(x)


def weight_decay_mask(params):
    """True for kernels (weights), False for biases and norm scales: AdamW decays weights only."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) == "kernel", params)
