"""A synthetic rating data set with a social graph in which friends share tastes.

:func:`make_social_ratings` is the library's seeded toy problem: it is used by the
command line's ``--data synthetic``, the notebooks and the tests. It is also importable
as ``socialals.datasets.make_social_ratings`` and ``socialals.make_social_ratings``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import pandas as pd

from ._validation import check_random_state, invalid

__all__ = ["make_social_ratings"]


def _check_param(name: str, value, ok: bool, requirement: str) -> None:
    if not ok:
        raise invalid(name, "make_social_ratings", requirement, value)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and bool(np.isfinite(value))


def make_social_ratings(
    n_users: int = 1000,
    n_items: int = 500,
    n_factors: int = 8,
    density: float = 0.08,
    n_friends: float = 10.0,
    homophily: float = 0.8,
    noise: float = 0.5,
    cold_start_fraction: float = 0.2,
    social_only_users: int = 0,
    rating_scale: Tuple[float, float] = (1, 5),
    rating_step: Optional[float] = 1.0,
    n_communities: int = 10,
    return_truth: bool = False,
    random_state=None,
):
    r"""Generate ratings and a trust graph in which friends share tastes.

    The generative model:

    * users belong to one of ``n_communities`` latent communities with centre
      :math:`c_k`; user factors are :math:`u = \sqrt{h}\, c_{k(u)} + \sqrt{1-h}\,
      e_u` with :math:`h` = ``homophily`` and private noise :math:`e_u`, so two users
      of one community have taste correlation :math:`h` and any user's factor
      variance does not depend on :math:`h`;
    * each user trusts a geometric number of others (mean ``n_friends``); each
      friend is drawn from the user's own community with probability :math:`h`, else
      uniformly from everyone. Edges are directed, without self-loops or repeats;
    * item popularity is Zipf-like (weight :math:`1/\mathrm{rank}`), and each user
      rates a popularity-weighted sample of distinct items. Rating counts are
      log-normal (at least 5), except for a ``cold_start_fraction`` of users who
      rate only 1 to 4 items;
    * a rating is :math:`\mu + b_u + b_i + u^\top v_i + \varepsilon` with
      :math:`\varepsilon \sim N(0, \mathrm{noise}^2)`, rounded to ``rating_step``
      from the bottom of the scale and clipped into ``rating_scale``. Popular items
      have slightly higher biases.

    The defaults (1,000 users, 500 items, about 40,000 ratings) generate in well under
    a second.

    Parameters
    ----------
    n_users : int, default=1000
        Users with at least one rating; their ids are ``0 .. n_users - 1``.
    n_items : int, default=500
        Items; ids ``0 .. n_items - 1`` (items in the far popularity tail may get no
        rating).
    n_factors : int, default=8
        Dimension of the true user and item factors.
    density : float, default=0.08
        Target fraction of the ``n_users x n_items`` matrix that is rated.
    n_friends : float, default=10.0
        Mean number of users each user trusts (some users trust no one).
    homophily : float, default=0.8
        In [0, 1]: the share of taste variance a user shares with their community,
        and the probability that a friend comes from the same community.
    noise : float, default=0.5
        Standard deviation of the rating noise, in rating units.
    cold_start_fraction : float, default=0.2
        Fraction of the ``n_users`` users who rate only 1-4 items.
    social_only_users : int, default=0
        Extra users (ids ``n_users ..``) who trust at least one user but rate nothing,
        like FilmTrust's 134 trust-only users. Zero by default so that plain and social
        models see the same users.
    rating_scale : tuple of two floats, default=(1, 5)
        Lowest and highest rating.
    rating_step : float or None, default=1.0
        Rating granularity (e.g. 0.5 for half stars); ``None`` keeps continuous values.
    n_communities : int, default=10
        Number of latent communities.
    return_truth : bool, default=False
        Also return a dict with the true parameters: ``user_factors`` (one row per
        user id, social-only users included), ``item_factors``, ``user_bias``,
        ``item_bias``, ``global_mean``, ``community``, ``cold_start_users`` and
        ``social_only_users``.
    random_state : None, int or numpy.random.Generator
        Seed; the same seed gives the same data.

    Returns
    -------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` (int64) and ``rating`` (float64), sorted by user then
        item, one row per pair.
    social : pandas.DataFrame
        Columns ``user``, ``friend`` (int64) and ``weight`` (float64, all 1.0).
    truth : dict
        Only when ``return_truth`` is true.

    Examples
    --------
    >>> from socialals import make_social_ratings
    >>> ratings, social = make_social_ratings(n_users=200, n_items=100, random_state=0)
    >>> list(ratings.columns), list(social.columns)
    (['user', 'item', 'rating'], ['user', 'friend', 'weight'])
    >>> bool(ratings["rating"].between(1, 5).all())
    True
    """
    _check_param("n_users", n_users, _is_int(n_users) and n_users >= 2, "an int >= 2")
    _check_param("n_items", n_items, _is_int(n_items) and n_items >= 5, "an int >= 5")
    _check_param("n_factors", n_factors, _is_int(n_factors) and n_factors >= 1, "an int >= 1")
    _check_param("density", density, _is_real(density) and 0 < density <= 1, "a float in (0, 1]")
    _check_param("n_friends", n_friends, _is_real(n_friends) and n_friends >= 0, "a float >= 0")
    _check_param("homophily", homophily, _is_real(homophily) and 0 <= homophily <= 1, "a float in [0, 1]")
    _check_param("noise", noise, _is_real(noise) and noise >= 0, "a float >= 0")
    _check_param(
        "cold_start_fraction",
        cold_start_fraction,
        _is_real(cold_start_fraction) and 0 <= cold_start_fraction <= 1,
        "a float in [0, 1]",
    )
    _check_param(
        "social_only_users",
        social_only_users,
        _is_int(social_only_users) and social_only_users >= 0,
        "an int >= 0",
    )
    scale_ok = (
        isinstance(rating_scale, (tuple, list))
        and len(rating_scale) == 2
        and all(_is_real(v) for v in rating_scale)
        and rating_scale[0] < rating_scale[1]
    )
    _check_param("rating_scale", rating_scale, scale_ok, "a pair (low, high) with low < high")
    _check_param(
        "rating_step",
        rating_step,
        rating_step is None or (_is_real(rating_step) and rating_step > 0),
        "None or a float > 0",
    )
    _check_param("n_communities", n_communities, _is_int(n_communities) and n_communities >= 1, "an int >= 1")

    rng = check_random_state(random_state, "make_social_ratings")
    low, high = float(rating_scale[0]), float(rating_scale[1])
    unit = (high - low) / 4.0  # effect sizes below are in "stars of a 1-5 scale"
    n_total = n_users + social_only_users

    # Tastes: community centre plus private noise, variance-preserving mix.
    signal_sd = 0.8 * unit  # standard deviation of u.v
    factor_sd = (signal_sd**2 / n_factors) ** 0.25
    community = rng.integers(n_communities, size=n_total)
    centres = rng.normal(0.0, factor_sd, size=(n_communities, n_factors))
    own = rng.normal(0.0, factor_sd, size=(n_total, n_factors))
    user_factors = np.sqrt(homophily) * centres[community] + np.sqrt(1.0 - homophily) * own
    item_factors = rng.normal(0.0, factor_sd, size=(n_items, n_factors))

    # Long-tailed popularity, and popular items rated a little higher.
    popularity = 1.0 / (rng.permutation(n_items) + 1.0)
    popularity /= popularity.sum()
    log_pop = np.log(popularity)
    item_bias = rng.normal(0.0, 0.3 * unit, size=n_items)
    item_bias += 0.15 * unit * (log_pop - log_pop.mean()) / log_pop.std()
    user_bias = rng.normal(0.0, 0.3 * unit, size=n_total)
    global_mean = low + 0.65 * (high - low)

    # How many items each rating user rates.
    n_cold = int(round(cold_start_fraction * n_users))
    cold_users = np.sort(rng.choice(n_users, size=n_cold, replace=False))
    counts = np.empty(n_users, dtype=np.int64)
    counts[cold_users] = rng.integers(1, 5, size=n_cold)
    warm = np.setdiff1d(np.arange(n_users), cold_users)
    if warm.size:
        target_warm = max(density * n_users * n_items - counts[cold_users].sum(), 5.0 * warm.size)
        spread = rng.lognormal(0.0, 0.7, size=warm.size)
        counts[warm] = np.rint(spread / spread.mean() * target_warm / warm.size).astype(np.int64)
        counts[warm] = np.clip(counts[warm], 5, n_items)

    # Popularity-weighted sampling without replacement (Gumbel top-k), in row blocks.
    users_out, items_out = [], []
    block = max(1, 2_000_000 // n_items)
    for start in range(0, n_users, block):
        stop = min(start + block, n_users)
        keys = log_pop[None, :] + rng.gumbel(size=(stop - start, n_items))
        order = np.argsort(-keys, axis=1)
        take = np.arange(n_items)[None, :] < counts[start:stop, None]
        items_out.append(order[take])
        users_out.append(np.repeat(np.arange(start, stop), counts[start:stop]))
    users = np.concatenate(users_out)
    items = np.concatenate(items_out)

    values = (
        global_mean
        + user_bias[users]
        + item_bias[items]
        + np.einsum("ij,ij->i", user_factors[users], item_factors[items])
        + rng.normal(0.0, noise, size=users.size)
    )
    if rating_step is not None:
        values = low + rating_step * np.rint((values - low) / rating_step)
    values = np.clip(values, low, high)
    ratings = pd.DataFrame(
        {"user": users.astype(np.int64), "item": items.astype(np.int64), "rating": values.astype(np.float64)}
    ).sort_values(["user", "item"], ignore_index=True)

    # Trust graph with homophily.
    members = [np.flatnonzero(community == k) for k in range(n_communities)]
    degrees = rng.geometric(1.0 / (1.0 + n_friends), size=n_total) - 1
    degrees[n_users:] = np.maximum(degrees[n_users:], 1)
    degrees = np.minimum(degrees, n_total - 1)
    trustors, trustees = [], []
    for user in range(n_total):
        degree = int(degrees[user])
        if degree == 0:
            continue
        pool = members[community[user]]
        pool = pool[pool != user]
        n_inside = min(int(rng.binomial(degree, homophily)), pool.size)
        chosen = rng.choice(pool, size=n_inside, replace=False) if n_inside else np.empty(0, dtype=np.int64)
        n_rest = degree - n_inside
        if n_rest:
            extra = rng.choice(n_total, size=min(n_total, degree + 1), replace=False)
            extra = extra[(extra != user) & ~np.isin(extra, chosen)][:n_rest]
            chosen = np.concatenate([chosen, extra])
        trustors.append(np.full(chosen.size, user, dtype=np.int64))
        trustees.append(chosen.astype(np.int64))
    social = pd.DataFrame(
        {
            "user": np.concatenate(trustors) if trustors else np.empty(0, dtype=np.int64),
            "friend": np.concatenate(trustees) if trustees else np.empty(0, dtype=np.int64),
        }
    )
    social["weight"] = 1.0

    if not return_truth:
        return ratings, social
    truth = {
        "user_factors": user_factors,
        "item_factors": item_factors,
        "user_bias": user_bias,
        "item_bias": item_bias,
        "global_mean": global_mean,
        "community": community,
        "cold_start_users": cold_users,
        "social_only_users": np.arange(n_users, n_total),
    }
    return ratings, social, truth
