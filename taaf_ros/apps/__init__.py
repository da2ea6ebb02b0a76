"""The commands: each console script is a module here that parses its arguments, sets up,
runs library code and reports; the library packages hold functions and classes only.

One convention for all of them (:mod:`.options`): argparse parsers made by ``parser``; a
folder written is ``--out-dir``, the one file written (a page; ``taaf_export``'s graph) is
``--output``. ``taaf_train`` alone parses with tyro, because its options are generated from
the one training config dataclass.
"""
