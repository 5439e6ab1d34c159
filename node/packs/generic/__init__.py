"""The generic pack: models the project did not write, deployed by configuration only.

A ``[models.NAME]`` table with ``format`` names one of three kinds of model, each run by
its own module and all turned into results by the same writers as the built-in packs:

==================  =========================================================  ==============
``format``          what ``path`` / ``command`` is                              module
==================  =========================================================  ==============
``command``         any program: ``command = ["prog", "{input}", "{output}"]``  :mod:`.command`
``monai-bundle``    a MONAI bundle folder (``configs/``, ``models/``)           :mod:`.monai_bundle`
``nnunet``          an nnU-Net v2 results folder (``dataset.json``, folds)      :mod:`.nnunet`
==================  =========================================================  ==============

:mod:`.spec` is what crosses from the configuration to the worker, :mod:`.volume` the
series as a volume with its geometry, :mod:`.labels` label names to coded segments and
:mod:`.report` the SEG + TID 1500 volumes report; :mod:`.pack` ties them together.
"""
