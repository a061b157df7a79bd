"""activemil: closed-loop Bayesian optimisation of high-entropy catalyst compositions."""

__version__ = "0.1.0"
