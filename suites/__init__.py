"""Suites shipped with crlbench (YAML files beside this module)."""
