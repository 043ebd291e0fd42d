"""Scenarios are data: YAML files validated into typed, frozen objects."""

from harness.scenario.loader import default_catalogue_dir, load_catalogue, load_file
from harness.scenario.model import Scenario

__all__ = ["Scenario", "default_catalogue_dir", "load_catalogue", "load_file"]
