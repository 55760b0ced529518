"""popdl: which demographic history produced the data, by deep learning on simulations.

Imports
    The package is acyclic (``tests/test_imports.py`` checks every import,
    including those inside functions).  At the bottom, :mod:`popdl.errors`,
    :mod:`popdl.common` and :mod:`popdl.seeds` import nothing of popdl; at
    the top,
    :mod:`popdl.config` asks each subsystem to check its part of a config,
    and the command line (:mod:`popdl.cli`, ``cli_*``) calls them all.

    Imports are at the top of each module, except those of libraries that
    take a noticeable time to import and that only some steps use:
    TensorFlow, Keras (and :mod:`popdl.models` and :mod:`popdl.training`,
    which import it when imported), JAX, torch, matplotlib, Optuna,
    scikit-learn, SciPy, msprime, cyvcf2, demesdraw and scikit-allel.  These
    are imported inside the function that uses them, so that a job starts
    with only the libraries its step needs.  For the same reason each
    sub-command of the ``cli_*`` modules imports the module that runs it
    inside its function: the parser imports every ``cli_*`` module.
"""

__version__ = "0.1.0"
