"""Whole cohorts: ``deepdiag batch`` over a manifest of scans on Ray workers, resumable, with one
results table for the cohort."""
