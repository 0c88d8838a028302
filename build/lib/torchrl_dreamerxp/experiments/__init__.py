"""Experiments: named method × env × seed runs, their results store, aggregate tables and plots."""
from .runner import run_experiment
from .spec import METHODS, Experiment, RunSpec, parse_parallel, parse_seeds
from .store import ResultsStore, read_run

__all__ = ["METHODS", "Experiment", "ResultsStore", "RunSpec", "parse_parallel", "parse_seeds", "read_run",
           "run_experiment"]
