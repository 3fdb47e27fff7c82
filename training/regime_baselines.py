"""Baselines for the regime head, and the scores that compare them with the model.

Two baselines, both fitted on the training fold only:

* persistence: today's regime holds.  To give finite log-loss it puts the training fold's
  empirical stay probability on today's regime and spreads the rest over the others in
  proportion to their training shares.
* a Gaussian HMM (hmmlearn) on the crypto composite's per-bar return and log absolute return,
  run as a *filter* (forward recursion only: `predict_proba` would smooth with future bars),
  mapped from hidden states to regime labels by the training fold's state/label table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

EPS = 1e-6


def regime_scores(prob: np.ndarray, label: np.ndarray) -> dict[str, float]:
    """Log-loss, multi-class Brier score and accuracy of probabilities `prob` [n, R] for int `label`."""
    prob = np.clip(np.asarray(prob, dtype=float), EPS, 1.0)
    prob = prob / prob.sum(axis=1, keepdims=True)
    label = np.asarray(label, dtype=int)
    n, r = prob.shape
    onehot = np.eye(r)[label]
    return {
        "logloss": float(-np.mean(np.log(prob[np.arange(n), label]))),
        "brier": float(np.mean(np.sum((prob - onehot) ** 2, axis=1))),
        "accuracy": float(np.mean(prob.argmax(axis=1) == label)),
    }


def persistence_probs(
    current_train: np.ndarray, forward_train: np.ndarray, current_test: np.ndarray, n_regimes: int = 3
) -> np.ndarray:
    """Today's regime holds, with the stay probability estimated on the training fold."""
    ok = (current_train >= 0) & (forward_train >= 0)
    c, f = current_train[ok].astype(int), forward_train[ok].astype(int)
    stay = (np.sum(c == f) + 1.0) / (len(c) + 2.0)
    shares = (np.bincount(f, minlength=n_regimes) + 1.0) / (len(f) + n_regimes)
    out = np.empty((len(current_test), n_regimes))
    for i, cur in enumerate(current_test.astype(int)):
        other = shares.copy()
        other[cur] = 0.0
        out[i] = (1.0 - stay) * other / other.sum()
        out[i, cur] = stay
    return out


def _hmm_inputs(bench_returns: np.ndarray) -> np.ndarray:
    r = np.nan_to_num(np.asarray(bench_returns, dtype=float), nan=0.0)
    return np.column_stack([r, np.log(np.abs(r) + 1e-4)])


@dataclass
class HMMRegimeBaseline:
    """Gaussian HMM on composite returns, filtered causally, mapped to regime labels."""

    n_states: int = 3
    n_regimes: int = 3
    seed: int = 0
    n_iter: int = 50

    def fit(self, bench_returns: np.ndarray, forward_labels: np.ndarray) -> HMMRegimeBaseline:
        from hmmlearn.hmm import GaussianHMM

        x = _hmm_inputs(bench_returns)
        self.model_ = GaussianHMM(
            n_components=self.n_states, covariance_type="full", n_iter=self.n_iter, random_state=self.seed
        )
        self.model_.fit(x)
        post = self._filter(x)
        ok = forward_labels >= 0
        table = np.ones((self.n_states, self.n_regimes))  # Laplace smoothing
        for r in range(self.n_regimes):
            table[:, r] += post[ok & (forward_labels == r)].sum(axis=0)
        self.mapping_ = table / table.sum(axis=1, keepdims=True)
        return self

    def _filter(self, x: np.ndarray) -> np.ndarray:
        """Forward-algorithm state probabilities p(s_t | x_1..x_t): causal."""
        m = self.model_
        loglik = m._compute_log_likelihood(x)  # [T, S]
        log_a = np.log(m.transmat_ + 1e-300)
        alpha = np.log(m.startprob_ + 1e-300) + loglik[0]
        alpha -= logsumexp(alpha)
        out = np.empty_like(loglik)
        out[0] = alpha
        for t in range(1, len(x)):
            alpha = logsumexp(alpha[:, None] + log_a, axis=0) + loglik[t]
            alpha -= logsumexp(alpha)
            out[t] = alpha
        return np.exp(out)

    def predict_proba(self, bench_returns: np.ndarray) -> np.ndarray:
        """Regime probabilities at each bar of `bench_returns` (which may start before the test period)."""
        post = self._filter(_hmm_inputs(bench_returns))
        return post @ self.mapping_
