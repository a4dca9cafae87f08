"""The built-in synthetic corpus: two-speaker mixtures of eSpeak NG speech, made locally.

Only ``sepkit prepare-demo``, ``sepkit demo --corpus synthetic`` and the fast tests use it; real
recordings go through :mod:`sepkit.data.prepare`. ``text``: sentences; ``speakers``: voices
with edited timbres, split by voice family; ``synth``: eSpeak NG through its C library;
``plan``: which utterances and mixtures each split gets; ``generate``: synthesis, mixing and the
corpus on disk. Nothing is imported here, so the generator's worker processes stay light.
"""
