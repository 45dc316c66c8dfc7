"""Training losses as pure functions of tensors: supervised depth (`depth`: soft
classification over log-depth bins, regressions), photometric error and minimum reprojection
(`photometric`), the multi-scale view-synthesis loss (`view_synthesis`), disparity smoothness
(`smoothness`) and ordinal ranking of weak pairs (`ranking`). Tasks combine and weigh them.
"""
