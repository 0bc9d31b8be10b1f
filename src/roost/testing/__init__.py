"""Helpers for Roost's own tests and benchmarks: throwaway servers and processes.

Shipped in the package (not under tests/) so that benchmarks and the lab reuse them.
"""
