"""Kinds of change: one module per kind (what it checks, applies, reads back and says) and the
registry that maps each :class:`changes.models.Change.Kind` to it (:mod:`changes.kinds.registry`).

Adding a kind: a ``Change.Kind`` member (with its migration), a module here with a
:class:`~changes.kinds.base.ChangeKind` subclass and its ``KIND`` instance, listed in the
registry; for a VM kind an operator requests from a page, a form in :mod:`changes.forms`.
"""
