import numpy as np

from adaptive_beta.training.regime_baselines import HMMRegimeBaseline, persistence_probs, regime_scores


def test_regime_scores_match_hand_computation():
    prob = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    label = np.array([0, 2])
    s = regime_scores(prob, label)
    assert np.isclose(s["logloss"], -(np.log(0.7) + np.log(0.1)) / 2)
    assert np.isclose(s["brier"], ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.8**2 + 0.9**2)) / 2)
    assert s["accuracy"] == 0.5


def test_persistence_puts_training_stay_rate_on_current_regime():
    cur = np.array([0] * 90 + [1] * 10)
    fwd = cur.copy()
    fwd[:9] = 1  # 9 of 100 change
    p = persistence_probs(cur, fwd, np.array([0, 1, 2]))
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.isclose(p[0, 0], (91 + 1) / 102)
    assert p[2].argmax() == 2


def test_hmm_filter_is_causal_and_separates_volatility_regimes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 0, 2, 0, 1], 150)
    vol = np.array([0.01, 0.04, 0.10])[labels]
    r = rng.normal(0, vol)
    hmm = HMMRegimeBaseline(seed=0).fit(r[:600], labels[:600])
    p_full = hmm.predict_proba(r)
    r2 = r.copy()
    r2[700:] = rng.normal(0, 0.2, size=len(r) - 700)  # change the future
    p_cut = hmm.predict_proba(r2)
    assert np.allclose(p_full[:700], p_cut[:700])  # filtered: the past does not move
    acc = np.mean(p_full.argmax(axis=1) == labels)
    assert acc > 0.65  # majority-class share is 0.5
