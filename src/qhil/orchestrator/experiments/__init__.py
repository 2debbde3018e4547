"""Experiments: async protocols over role interfaces and the classical channel."""
