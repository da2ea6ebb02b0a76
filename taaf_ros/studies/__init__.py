"""Studies: protocols of many training runs and the pages they write. ``loso`` (leave one
speaker out: the job runner, the folds, ``loso_report``'s results page), ``optim_select``
(optimiser per method on validation speakers), ``robustness`` (the corruption grid on
checkpoints) and ``fusion_study`` (late-fusion rules under corruptions).

They import :mod:`taaf_ros.training` (one run: its config, trainer and evaluation); training
never imports them.
"""
