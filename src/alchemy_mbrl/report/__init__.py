"""Tables 1 and 2 of the paper (Markdown, CSV, LaTeX) and the plots, from the workflow's outputs.

``tables`` builds the tables as pandas DataFrames beside the paper's published numbers;
``plots`` draws score vs expansions, the training curves and the HPO convergence with
matplotlib (Agg backend). ``commands`` exposes them as ``alchemy-mbrl report ...``.
"""
