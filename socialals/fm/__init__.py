"""Factorization machines (Rendle, ICDM 2010): the degree-2 baseline.

The model
---------
For a feature vector ``x`` (n_features,) ::

    ŷ(x) = w0 + Σ_l w_l x_l + Σ_{l<m} ⟨v_l, v_m⟩ x_l x_m

computed in O(k · nnz(x)) as ``w0 + Σ_l w_l x_l + ½ Σ_f [(Σ_l v_lf x_l)² − Σ_l v_lf² x_l²]``.
Parameters: ``w0_`` (float), ``w_`` (n_features,), ``V_`` (n_features, k).

The objective
-------------
Both solvers minimise the same written objective over the n training rows ::

    L = Σ_i ℓ(ŷ(x_i), y_i) + ½ λ_0 c_0 w0² + ½ Σ_l c_l (λ_w w_l² + λ_V ‖v_l‖²)

with ``λ_w = reg_w`` (``reg`` when None), ``λ_V = reg_V`` (``reg`` when None),
``λ_0 = reg_w0``, the penalty weights

* ``reg_scaling="frequency"`` (default): ``c_l = n_l``, the number of training rows in
  which feature l is non-zero, and ``c_0 = n``. λ is a penalty *per occurrence*: what
  libFM's and fastFM's SGD apply at every visit of a feature, and for the factors the
  weighting of ALS-WR (Zhou et al., 2008). It measured clearly better than uniform
  weights on MovieLens-shaped data at k = 16 and 64 (``benchmarks/bench_fm.py``), and
  its λ does not need rescaling with the data size;
* ``reg_scaling="none"``: ``c_l = c_0 = 1``, one λ per parameter — the Gaussian-prior
  (MAP) form of libFM's ALS and MCMC;

and the losses

* ``"squared"``: ``ℓ = ½ (ŷ − y)²`` (ratings);
* ``"logistic"``: ``ℓ = log(1 + exp(−y ŷ))``, y in {−1, +1};
* ``"hinge"``: ``ℓ = max(0, 1 − y ŷ)``, y in {−1, +1}.

Labels given as {0, 1} are mapped to {−1, +1} internally; ``classes_`` keeps the caller's
coding. A feature that never occurs in the training rows keeps ``w_l = 0`` and
``v_l = 0`` (the minimiser of its penalty).

Layout
------
* :mod:`socialals.fm._model` — the estimator (hyperparameters, targets, the two APIs);
* :mod:`socialals.fm._objective` — losses, prediction, the penalty (shared by the solvers);
* :mod:`socialals.fm._sgd` — the SGD solver (and its numpy reference epoch);
* :mod:`socialals.fm._cd` — the coordinate-descent (ALS) solver and its column groups;
* :mod:`socialals.fm._design` — the design matrix of a rating DataFrame;
* :mod:`socialals.fm._foldin` — fold-in of new users (:meth:`FactorizationMachine.fold_in`);
* :mod:`socialals.fm._kernels` — the compiled (numba) kernels of both solvers.

Two ways in
-----------
* :meth:`FactorizationMachine.fit_matrix` / :meth:`~FactorizationMachine.predict_matrix`
  on a design matrix (scipy sparse or dense), like any FM library.
* :meth:`FactorizationMachine.fit` on a rating DataFrame (the socialals contract): the
  design row of rating (u, i) is ``[one-hot u | one-hot i | social(u) | user features(u)
  | item features(i)]`` where ``social(u)`` puts ``w_uf / Σ_f' w_uf'`` on the column of
  each friend f of u (u's out-links in the social frame; 1/|F(u)| with unit weights),
  in a separate block of n_users columns (the FM way to use a trust graph, as implicit
  user features). Users known only through the graph are users of the model: their
  rows of the user block never occur in training (so their one-hot parameters are 0)
  and they are scored from their friends' columns. Because every feature belongs
  either to the user or to the item, the score decomposes as
  ``w0 + a_u + b_i + ⟨p_u, p_i⟩`` (``p_u`` the sum of the user-side ``x_l v_l``, ``a_u``
  the user side's linear and internal pairwise terms); :meth:`recommend` scores a block
  of users against all items with one matrix product and never builds a
  users x items design matrix. Social features multiply the design's non-zeros by about
  (2 + average out-degree) / 2, and the training time with them.

New users
---------
:meth:`FactorizationMachine.fold_in` (and ``recommend_new``) fits a new user's own
parameters, the weight and factor row of its user column, by the written objective
restricted to that user's terms with every other parameter fixed (the model is affine in
them, so for the squared loss this is a ridge system of size k+1); its friend and side
features enter its design rows as in :meth:`~FactorizationMachine.fit`. See
:mod:`socialals.fm._foldin`.
"""

from ._model import FactorizationMachine

__all__ = ["FactorizationMachine"]
