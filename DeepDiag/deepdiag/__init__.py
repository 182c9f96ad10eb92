"""DeepDiag engine: deep-learning diagnosis on CT/MR volumes.

The engine never imports Slicer, Qt or VTK, so it runs the same in a terminal, in a
batch job, in the test suite and as the subprocess that the Slicer modules start.
"""

__version__ = "0.1.0"
