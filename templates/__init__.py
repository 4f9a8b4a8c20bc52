"""The files we render onto hosts and the doctor's report, shipped as package data."""
