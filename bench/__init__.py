"""Benchmarks, one script each; a package so that type checkers do not take bench/http.py
for the standard library's ``http``."""
