"""MuZero's search on a model blind to the state, repeated as Reanalyse repeats it at every target copy.

The model gives every state the same value v and every action the same reward r, so every action's one-step
Q = r + gamma v is the same. The root prior starts uniform but for a lead of `--lead` in one logit. Each
"copy" runs the search (mzu.py's settings: pUCT constants, root Dirichlet noise, simulations) on `--roots`
roots and takes the mean visit distribution as the next prior, the fixed point a policy trained to the
visit targets moves to between two copies of the target network. Printed: the prior's entropy per copy.

Where r + gamma v > v (the one-step Q above the root's value), min-max normalised Q scores the first child
visited 1 and the unvisited 0, so the visits follow the prior's largest action and the prior collapses
onto it; where r + gamma v <= v, the visits, and the prior, stay uniform (docs/atari.md, the study's MZU
runs).

    python -m benchmark.search_collapse                    # r = 0.0155, v = 0.7125: the probe's Breakout model
    python -m benchmark.search_collapse --reward 0         # Q below v: nothing collapses
"""

import argparse

import jax
import jax.numpy as jnp
import mctx
import numpy as np

from benchmark.algorithms import script


def prior_entropies(
    reward: float, value: float, lead: float, copies: int, roots: int, simulations: int, discount: float, seed: int
) -> tuple:
    """(the prior's entropy before each copy, the final prior) over `copies` copies."""
    defaults = script("mzu").Args()  # mzu.py's search settings
    num_actions = 4

    def recurrent_fn(params, rng, action, embedding):
        del params, rng
        out = mctx.RecurrentFnOutput(
            reward=jnp.full(action.shape, reward),
            discount=jnp.full(action.shape, discount),
            prior_logits=jnp.zeros((action.shape[0], num_actions)),
            value=jnp.full(action.shape, value),
        )
        return out, embedding

    @jax.jit
    def mean_visits(prior_logits, key):
        root = mctx.RootFnOutput(
            prior_logits=jnp.broadcast_to(prior_logits, (roots, num_actions)),
            value=jnp.full((roots,), value),
            embedding=jnp.zeros((roots,)),
        )
        out = mctx.muzero_policy(
            None,
            key,
            root,
            recurrent_fn,
            simulations,
            dirichlet_fraction=defaults.dirichlet_fraction,
            dirichlet_alpha=defaults.dirichlet_alpha,
            pb_c_init=defaults.pb_c_init,
            pb_c_base=defaults.pb_c_base,
        )
        return out.action_weights.mean(axis=0)

    prior = jax.nn.softmax(jnp.zeros(num_actions).at[1].set(lead))
    entropies = []
    for copy in range(copies):
        p = np.asarray(prior, np.float64)
        entropies.append(float(-(p * np.log(np.maximum(p, 1e-12))).sum()))
        prior = mean_visits(jnp.log(prior), jax.random.PRNGKey(seed + copy))
    return entropies, np.asarray(prior)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reward", type=float, default=0.0155, help="the model's reward after every action")
    parser.add_argument("--value", type=float, default=0.7125, help="the model's value of every state")
    parser.add_argument("--lead", type=float, default=0.01, help="how much larger action 1's prior logit starts")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--roots", type=int, default=512)
    parser.add_argument("--simulations", type=int, default=20)
    parser.add_argument("--discount", type=float, default=0.997)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("copies", "roots", "simulations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    entropies, prior = prior_entropies(
        args.reward, args.value, args.lead, args.copies, args.roots, args.simulations, args.discount, args.seed
    )
    q_minus_v = args.reward + args.discount * args.value - args.value
    print(f"one-step Q - v = {q_minus_v:+.5f}; the prior's entropy at each copy (log 4 = 1.386):")
    print(", ".join(f"{e:.3f}" for e in entropies))
    print("final prior:", [round(float(p), 3) for p in prior])


if __name__ == "__main__":
    main()
