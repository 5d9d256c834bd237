"""Shared building blocks of the single-file algorithms.

Only what at least two scripts need lives here: networks, value transforms, data loaders and
the in-memory episodic store, environments and evaluation, and score tables. Nothing in this
package imports an algorithm script.
"""
