"""Classical beta estimators (rolling OLS, EWMA, Welch, Kalman, Vasicek/Blume, multi-factor): the
baselines the network must beat, and inputs it may use. `baselines.baseline_forecasts` runs them all."""
