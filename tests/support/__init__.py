"""Helpers shared by the test suites: fakes, rigs, data, simulations and the operator contract.

Test modules import helpers from here only (never from another test module or a conftest);
pytest fixtures stay in the conftest.py files, which may build on these helpers.
"""
