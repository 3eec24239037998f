"""Serving one function: the FunctionRouter chooses variants, runs them with fallback and
records what happened. No Ray import: Serve runs it as a deployment, tests build it directly."""
